"""What is true about jobs now: ask each host once (one command for all its jobs), infer
UNREACHABLE when it does not answer, and refresh the registry's cache."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from agent.protocol import JobState

from .agent_client import AgentClient
from .errors import TetherError
from .hosts import host_for_record
from .jobs import JobRecord, Registry
from .settings import Places


STATUS_RETRY_S = 5.0  # a status read retries a silent host this long, then says UNREACHABLE


@dataclass
class JobView:
    record: JobRecord
    state: JobState
    reason: Optional[str] = None
    failure: Optional[str] = None
    exit_code: Optional[int] = None
    heartbeat_age_s: Optional[float] = None
    step: Optional[int] = None
    metrics: Dict[str, Any] = field(default_factory=dict)
    resources: Dict[str, Any] = field(default_factory=dict)
    started_at: Optional[float] = None
    ended_at: Optional[float] = None
    attempt: int = 0
    stage: Optional[str] = None
    warnings: List[str] = field(default_factory=list)
    backup: Dict[str, Any] = field(default_factory=dict)
    mirror: Dict[str, Any] = field(default_factory=dict)   # an hf:// backup mirror's pushes
    deadline_at: Optional[float] = None
    spend_usd: Optional[float] = None
    error: Optional[TetherError] = None

    def as_json(self) -> dict:
        r = self.record
        return {
            "id": r.id, "name": r.name, "provider": r.provider, "host": host_label(r),
            "job_dir": r.job_dir, "created": r.created, "state": self.state.value,
            "reason": self.reason, "failure": self.failure, "exit_code": self.exit_code,
            "heartbeat_age_s": self.heartbeat_age_s, "step": self.step, "metrics": self.metrics,
            "resources": self.resources, "started_at": self.started_at, "ended_at": self.ended_at,
            "attempt": self.attempt, "stage": self.stage, "warnings": self.warnings,
            "backup": self.backup, "mirror": self.mirror, "deadline_at": self.deadline_at,
            "spend_usd": self.spend_usd,
            "instance": r.instance, "price_per_hour": r.price_per_hour,
        }


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
            client = AgentClient(host, first.python, first.runtime_dir)
            answers = client.status([r.job_dir for r in group])
            for r, a in zip(group, answers):
                views[r.id] = _view(r, a)
        except TetherError as exc:
            for r in group:
                views[r.id] = JobView(r, JobState.UNREACHABLE, reason=exc.line(), error=exc, spend_usd=_spend(r))
        finally:
            host.close()
    for v in views.values():
        if v.state != JobState.UNREACHABLE:
            registry.set_state(v.record.id, v.state.value)
    return [views[r.id] for r in records]


def _kaggle_view(r: JobRecord) -> JobView:
    import os

    from .kaggle_job import kernel_view

    try:
        a = kernel_view(r, os.environ)
    except TetherError as exc:
        return JobView(r, JobState.UNREACHABLE, reason=exc.line(), error=exc)
    except Exception as exc:  # the provider's own errors, read as "cannot ask now"
        return JobView(r, JobState.UNREACHABLE, reason=f"kaggle: {getattr(exc, 'what', exc)}")
    return JobView(r, JobState(a["state"]), reason=a.get("reason"), failure=a.get("failure"),
                   exit_code=a.get("exit_code"))


def _notebook_view(r: JobRecord) -> JobView:
    """Nothing connects to a notebook job; with an hf:// mirror, its newest pushed backup is
    what can be known of it."""
    import os

    from . import hub_mirror
    from .spec import BackupSpec

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


def _view(r: JobRecord, a: dict) -> JobView:
    if not a.get("exists"):
        return JobView(r, JobState.LOST, reason=f"job folder {r.job_dir} is gone from the host")
    return JobView(
        r, JobState(a["state"]), reason=a.get("reason"), failure=a.get("failure"),
        exit_code=a.get("exit_code"), heartbeat_age_s=a.get("heartbeat_age_s"), step=a.get("step"),
        metrics=a.get("metrics") or {}, resources=a.get("resources") or {},
        started_at=a.get("started_at"), ended_at=a.get("ended_at"), attempt=a.get("attempt") or 0,
        stage=a.get("stage"), warnings=a.get("warnings") or [], backup=a.get("backup") or {},
        mirror=a.get("mirror") or {},
        deadline_at=a.get("deadline_at"), spend_usd=a.get("spend_usd") or _spend(r),
    )


def _spend(r: JobRecord) -> Optional[float]:
    from .provision import spend

    inst = r.instance or {}
    return spend(r.price_per_hour, inst.get("created") or r.created, inst.get("destroyed_at"))
