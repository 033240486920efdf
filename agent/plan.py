"""The agent's plan for a job, from spec.json (the launcher's payload, agent/payload.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from .files import read_json
from .paths import JobDir
from .payload import HubFacts, JobPayload
from .protocol import FailureClass

LOG_MAX_BYTES = 64 * 1024 * 1024   # the workload's log rotates at this size


@dataclass(frozen=True)
class Stage:
    name: str
    command: str


@dataclass(frozen=True)
class RunPlan:
    """What the monitor loop runs by: built from the job's payload (agent/payload.py), which
    holds every default; nothing here has one of its own."""
    job_id: str
    name: str
    project: str
    stages: Tuple[Stage, ...]          # a plain `run:` is one stage named "main"
    env: Dict[str, str]
    setup: Optional[str]
    setup_key: Optional[str]
    heartbeat_every_s: float
    stall_after_s: float
    grace_s: float
    restart_max: int
    restart_on: Tuple[FailureClass, ...]
    restart_backoff_s: float
    backup_every_s: float
    backup_keep: int
    backup_link: bool                  # hard links where possible; copy: real copies
    backup_wait_s: float               # how long an asked-for checkpoint may take
    stop_on_backup_disk_full: bool
    mirror_repo: Optional[str]         # backup.mirror: hf://<repo>
    mirror_wait_s: float               # how long the agent waits at the end for the last push
    hub_endpoint: Optional[str]        # HF_ENDPOINT as the launcher had it
    hub_disable_xet: Optional[bool]
    deadline_at: Optional[float]       # absolute: limits.max_hours or a session's end
    deadline_margin_s: float
    min_disk_free_gb: Optional[float]
    max_ram_percent: Optional[float]
    max_gpu_mem_percent: Optional[float]
    max_usd: Optional[float]
    price_per_hour: Optional[float]    # of a rented instance
    instance_created: Optional[float]
    autodown: bool
    autodown_wait_s: float             # the longest a rented host waits for its results to be pulled
    resume_first: bool                 # a job moved to a new host: attempt 0 resumes too
    path_prepend: List[str]            # e.g. the local provider's venv
    python: Optional[str]              # host.python's absolute path: what python/pip in run: mean
    progress_pattern: Optional[str]    # progress.pattern: progress read from printed lines
    progress_total: Optional[int]      # progress.total: the step the run ends at
    node: Optional[Dict[str, Any]] = None  # a multi-node job's facts (rendezvous.NodePlan reads them)
    log_max_bytes: int = LOG_MAX_BYTES

    @classmethod
    def load(cls, job: JobDir, started: Optional[float] = None) -> "RunPlan":
        """started: when this agent run began; limits.max_hours counts from it."""
        doc = read_json(job.spec)
        if doc is None:
            raise FileNotFoundError(f"{job.spec} is missing: the launcher writes it before start")
        return cls.from_payload(JobPayload.from_json(doc), started)

    @classmethod
    def from_payload(cls, payload: JobPayload, started: Optional[float] = None) -> "RunPlan":
        s, run = payload.settings, payload.job
        started = time.time() if started is None else started
        deadlines = [d for d in (run.deadline_at, started + s.limits.max_hours * 3600 if s.limits.max_hours else None)
                     if d is not None]
        budget = min(deadlines) - started if deadlines else 0.0
        margin = s.limits.margin_s
        if margin is None:  # time for a checkpoint and a backup, but never most of a short run
            margin = min(s.stop.grace_s + 180.0, 0.1 * budget)
        mirror = s.backup.mirror or ""
        if s.stages:
            stages = tuple(Stage(st.name, st.run) for st in s.stages)
        elif run.command is not None:
            stages = (Stage("main", run.command),)
        else:
            raise ValueError("payload.job.command: missing (a job without stages runs a command)")
        hub = run.hub or HubFacts()
        return cls(
            job_id=run.id, name=s.name, project=run.project, stages=stages, env=dict(s.env),
            setup=s.setup, setup_key=run.setup_key,
            heartbeat_every_s=s.heartbeat.every_s, stall_after_s=s.heartbeat.stall_after_s,
            grace_s=s.stop.grace_s,
            restart_max=s.restart.max, restart_on=tuple(FailureClass(c) for c in s.restart.on),
            restart_backoff_s=s.restart.backoff_s,
            backup_every_s=s.backup.every_min * 60.0, backup_keep=s.backup.keep,
            backup_link=s.backup.mode == "link", backup_wait_s=s.backup.wait_s,
            stop_on_backup_disk_full=s.backup.on_disk_full == "stop",
            mirror_repo=mirror[len("hf://"):] if mirror.startswith("hf://") else None,
            mirror_wait_s=s.backup.mirror_wait_s,
            hub_endpoint=hub.endpoint, hub_disable_xet=hub.disable_xet,
            deadline_at=min(deadlines) if deadlines else None, deadline_margin_s=float(margin),
            min_disk_free_gb=s.watch.min_disk_free_gb, max_ram_percent=s.watch.max_ram_percent,
            max_gpu_mem_percent=s.watch.max_gpu_mem_percent,
            max_usd=s.limits.max_usd, price_per_hour=run.price_per_hour, instance_created=run.instance_created,
            autodown=run.autodown, autodown_wait_s=run.autodown_wait_s, resume_first=run.resume_first,
            path_prepend=list(run.path_prepend), python=run.python_executable,
            progress_pattern=s.progress.pattern, progress_total=s.progress.total, node=run.node,
        )
