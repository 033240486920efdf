"""What is true about jobs now: ask each host once (one command for all its jobs), infer
UNREACHABLE when it does not answer, and refresh the registry's cache."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from agent.protocol import JobState, StatusAnswer

from launcher.transport.agent_client import AgentClient
from launcher.errors import RemoteError, TetherError
from launcher.transport.targets import host_for_record
from launcher.registry import JobRecord, Registry
from launcher.transport.host import Host
from launcher.settings import Places


STATUS_RETRY_S = 5.0  # a status read retries a silent host this long, then says UNREACHABLE


@dataclass
class JobView:
    """A job now: its record, the state the launcher settled on, and what its host answered
    (checked on entry: agent.protocol.StatusAnswer)."""

    record: JobRecord
    state: JobState
    reason: Optional[str] = None
    answer: StatusAnswer = field(default_factory=StatusAnswer)
    error: Optional[TetherError] = None
    spend_usd: Optional[float] = None
    last_known: Optional[str] = None   # what the host said last time, while it does not answer

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
        return {"id": r.id, "name": r.name, "provider": r.provider, "host": host_label(r), "job_dir": r.job_dir,
                "created": r.created, **a, "instance": r.instance, "price_per_hour": r.price_per_hour,
                "last_known": self.last_known}


def host_label(r: JobRecord) -> str:
    ep = r.endpoint
    if ep.get("kind") == "local":
        return "local"
    if ep.get("kind") == "kaggle":
        return f"kaggle:{ep['user']}/{ep['slug']}"
    if ep.get("kind") == "notebook":
        return f"colab-notebook:{ep['file']}"
    user = f"{ep['user']}@" if ep.get("user") else ""
    return f"{user}{ep['host']}:{ep['port']}"


def observe(records: List[JobRecord], places: Places, registry: Registry) -> List[JobView]:
    by_host: Dict[str, List[JobRecord]] = {}
    for r in records:
        by_host.setdefault(json.dumps(r.endpoint, sort_keys=True), []).append(r)
    views: Dict[str, JobView] = {}
    for group in by_host.values():
        first = group[0]
        if first.in_kernel or first.in_notebook:
            for r in group:
                views[r.id] = _kaggle_view(r) if first.in_kernel else _notebook_view(r)
            continue
        host = host_for_record(first, places, max_retry_s=STATUS_RETRY_S)
        try:
            views.update(observe_on(host, group))
        finally:
            host.close()
    for v in views.values():
        if v.state != JobState.UNREACHABLE:
            registry.set_state(v.record.id, v.state.value, v.answer.step)
        else:
            v.last_known = _last_known(v.record)
    return [views[r.id] for r in records]


def observe_on(host: Host, group: List[JobRecord]) -> Dict[str, JobView]:
    """One host's jobs from one status command; UNREACHABLE when it does not answer. The
    host stays open (the dashboard reuses its connection)."""
    first = group[0]
    try:
        answers = AgentClient(host, first.python, first.runtime_dir).status([r.job_dir for r in group])
        if not isinstance(answers, list) or len(answers) != len(group):
            raise RemoteError(f"{host.name} answered status with something that is not one answer per job")
        return {r.id: _view(r, a) for r, a in zip(group, answers)}
    except TetherError as exc:
        return {r.id: JobView(r, JobState.UNREACHABLE, reason=exc.line(), error=exc, spend_usd=_spend(r))
                for r in group}


def _kaggle_view(r: JobRecord) -> JobView:
    import os

    from launcher.backends.kaggle import kernel_view

    try:
        a = kernel_view(r, os.environ)
    except TetherError as exc:
        return JobView(r, JobState.UNREACHABLE, reason=exc.line(), error=exc)
    except Exception as exc:  # the provider's own errors, read as "cannot ask now"
        return JobView(r, JobState.UNREACHABLE, reason=f"kaggle: {getattr(exc, 'what', exc)}")
    try:
        answer = StatusAnswer.from_json(a)
    except ValueError as exc:
        return JobView(r, JobState.UNREACHABLE, reason=f"kaggle: {exc}")
    return JobView(r, answer.state, reason=answer.reason, answer=answer)


def _notebook_view(r: JobRecord) -> JobView:
    """Nothing connects to a notebook job; with an hf:// mirror, its newest pushed backup is
    what can be known of it."""
    import os

    from launcher.hub import backups as hub_mirror
    from launcher.spec import BackupSpec

    reason = f"runs in the Colab notebook {r.endpoint['file']}: tether cannot reach it"
    hub = None
    try:
        hub = hub_mirror.for_job(BackupSpec.model_validate((r.spec or {}).get("backup") or {}).hub_repo,
                                 os.environ)
        if hub is not None:
            reason += f"; newest backup on hf://{hub.repo}: {hub_mirror.newest_name(hub, os.environ)}"
    except TetherError as exc:
        reason += f"; {exc.what}" if hub is not None else f"; {exc.line()}"
    return JobView(r, JobState.UNREACHABLE, reason=reason)


def _view(r: JobRecord, a: object) -> JobView:
    try:
        answer = StatusAnswer.from_json(a)
    except ValueError as exc:
        return JobView(r, JobState.UNREACHABLE, reason=f"the host's answer was not understood: {exc}")
    if not answer.exists:
        if r.last_state == "LAUNCHING":  # the launch was killed before it created anything there
            return JobView(r, JobState.FAILED, reason="its launch did not finish, and nothing of it is on the "
                           f"host: launch again (tether forget {r.id} drops this record)", answer=answer)
        return JobView(r, JobState.LOST, reason=f"job folder {r.job_dir} is gone from the host", answer=answer)
    return JobView(r, answer.state, reason=answer.reason, answer=answer, spend_usd=answer.spend_usd or _spend(r))


def _last_known(r: JobRecord) -> Optional[str]:
    if not r.last_seen or r.last_state in ("LAUNCHING", "UNREACHABLE"):
        return None
    age = time.time() - r.last_seen
    when = f"{age:.0f}s" if age < 90 else f"{age / 60:.0f}m" if age < 5400 else f"{age / 3600:.1f}h"
    step = f" at step {r.last_step}" if r.last_step is not None else ""
    return f"{r.last_state}{step}, {when} ago"


def _spend(r: JobRecord) -> Optional[float]:
    from launcher.jobs.rent import spend

    inst = r.instance or {}
    return spend(r.price_per_hour, inst.get("created") or r.created, inst.get("destroyed_at"))
