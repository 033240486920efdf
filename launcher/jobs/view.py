"""A job as the launcher sees it now: its record, the state it settled on, and what its host
answered (checked on entry: agent.protocol.StatusAnswer). Data only: every kind of job
(backends/) makes these, every view (show/, cli/, dashboard/) reads them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

from agent.protocol import JobState, StatusAnswer

from launcher.errors import TetherError
from launcher.registry import JobRecord


@dataclass
class JobView:
    record: JobRecord
    state: JobState
    reason: Optional[str] = None
    answer: StatusAnswer = field(default_factory=StatusAnswer)
    error: Optional[TetherError] = None
    spend_usd: Optional[float] = None
    last_known: Optional[str] = None   # what the host said last time, while it does not answer
    host: str = ""                     # where it runs, in words (its handle's label)
    recent: Optional[list] = None      # progress rows, thinned, when the status was asked for them
    nodes: Optional[list] = None       # a multi-node job: each node's own view, node 0 first

    # The answer's fields most views read, by name.
    step = property(lambda self: self.answer.step)
    metrics = property(lambda self: self.answer.metrics)
    attempt = property(lambda self: self.answer.attempt)
    heartbeat_age_s = property(lambda self: self.answer.heartbeat_age_s)
    warnings = property(lambda self: self.answer.warnings)

    def as_json(self) -> dict:
        r = self.record
        a = self.answer.to_json()
        a.update(state=self.state.value, reason=self.reason, spend_usd=self.spend_usd,
                 failure=self.answer.failure.value if self.answer.failure else None)
        return {"id": r.id, "name": r.name, "provider": r.provider, "host": self.host, "job_dir": r.job_dir,
                "created": r.created, **a, "instance": r.instance, "price_per_hour": r.price_per_hour,
                "last_known": self.last_known,
                **({"nodes": [node_json(k, v) for k, v in enumerate(self.nodes)]} if self.nodes else {})}


def node_json(k: int, v: "JobView") -> dict:
    """One node's row of a multi-node job's status."""
    return {"node": k, "host": v.host, "state": v.state.value, "reason": v.reason, "step": v.answer.step,
            "attempt": v.answer.attempt, "heartbeat_age_s": v.answer.heartbeat_age_s,
            "mirror": v.answer.to_json().get("mirror")}  # its own pushes (the job's "mirror" is node 0's)


def runs_there(v: JobView) -> bool:
    """The host answered that the job runs there now (a state not yet ended). LOST (its agent
    is not running) and UNREACHABLE are not."""
    return not v.state.is_terminal and not v.state.is_inferred


def last_known(r: JobRecord) -> Optional[str]:
    """The registry's memory of a job, for while its host does not answer."""
    if not r.last_seen or r.last_state in ("LAUNCHING", "UNREACHABLE"):
        return None
    age = time.time() - r.last_seen
    when = f"{age:.0f}s" if age < 90 else f"{age / 60:.0f}m" if age < 5400 else f"{age / 3600:.1f}h"
    step = f" at step {r.last_step}" if r.last_step is not None else ""
    return f"{r.last_state}{step}, {when} ago"


def spend(price_per_hour: Optional[float], created: float, ended: Optional[float] = None) -> Optional[float]:
    """$ spent by an instance: its price times how long it has run."""
    if not price_per_hour:
        return None
    return round(price_per_hour * max(0.0, ((ended or time.time()) - created)) / 3600.0, 4)


def spend_of(r: JobRecord) -> Optional[float]:
    inst = r.instance or {}
    return spend(r.price_per_hour, inst.get("created") or r.created, inst.get("destroyed_at"))
