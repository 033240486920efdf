"""The agent's typed view of spec.json (written by the launcher, read here only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from .files import read_json
from .paths import JobDir


@dataclass(frozen=True)
class RunPlan:
    job_id: str
    name: str
    project: str
    command: str                       # a shell command, run with bash -c (sh without bash)
    env: Dict[str, str] = field(default_factory=dict)
    setup: Optional[str] = None
    setup_key: Optional[str] = None
    heartbeat_every_s: float = 10.0
    stall_after_s: float = 900.0
    grace_s: float = 120.0
    path_prepend: List[str] = field(default_factory=list)  # e.g. the local provider's venv
    log_max_bytes: int = 64 * 1024 * 1024

    @classmethod
    def load(cls, job: JobDir) -> "RunPlan":
        doc = read_json(job.spec)
        if doc is None:
            raise FileNotFoundError(f"{job.spec} is missing: the launcher writes it before start")
        spec, run = doc["spec"], doc["job"]
        hb = spec.get("heartbeat") or {}
        return cls(
            job_id=run["id"],
            name=spec["name"],
            project=run["project"],
            command=run["command"],
            env={str(k): str(v) for k, v in (spec.get("env") or {}).items()},
            setup=spec.get("setup"),
            setup_key=run.get("setup_key"),
            heartbeat_every_s=float(hb.get("every_s", 10.0)),
            stall_after_s=float(hb.get("stall_after_s", 900.0)),
            grace_s=float((spec.get("stop") or {}).get("grace_s", 120.0)),
            path_prepend=list(run.get("path_prepend") or []),
        )
