"""The agent's typed view of spec.json (written by the launcher, read here only)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from .files import read_json
from .paths import JobDir
from .protocol import FailureClass


@dataclass(frozen=True)
class Stage:
    name: str
    command: str


@dataclass(frozen=True)
class RunPlan:
    job_id: str
    name: str
    project: str
    stages: Tuple[Stage, ...]          # a plain `run:` is one stage named "main"
    env: Dict[str, str] = field(default_factory=dict)
    setup: Optional[str] = None
    setup_key: Optional[str] = None
    heartbeat_every_s: float = 10.0
    stall_after_s: float = 900.0
    grace_s: float = 120.0
    restart_max: int = 3
    restart_on: Tuple[FailureClass, ...] = (FailureClass.INFRA, FailureClass.STALL)
    restart_backoff_s: float = 30.0
    backup_every_s: float = 1800.0
    backup_keep: int = 3
    backup_link: bool = True           # hard links where possible; copy: real copies
    backup_wait_s: float = 600.0       # how long an asked-for checkpoint may take
    stop_on_backup_disk_full: bool = False
    mirror_repo: Optional[str] = None      # backup.mirror: hf://<repo>
    mirror_wait_s: float = 1800.0          # how long the agent waits at the end for the last push
    hub_endpoint: Optional[str] = None     # HF_ENDPOINT as the launcher had it
    hub_disable_xet: Optional[bool] = None
    deadline_at: Optional[float] = None    # absolute: limits.max_hours or a session's end
    deadline_margin_s: float = 300.0
    min_disk_free_gb: Optional[float] = None
    max_ram_percent: Optional[float] = None
    max_gpu_mem_percent: Optional[float] = None
    max_usd: Optional[float] = None
    price_per_hour: Optional[float] = None     # of a rented instance
    instance_created: Optional[float] = None
    autodown: bool = False
    autodown_wait_s: float = 3600.0        # the longest a rented host waits for its results to be pulled
    resume_first: bool = False         # a job moved to a new host: attempt 0 resumes too
    path_prepend: List[str] = field(default_factory=list)  # e.g. the local provider's venv
    python: Optional[str] = None       # host.python's absolute path: what python/pip in run: mean
    progress_pattern: Optional[str] = None   # progress.pattern: progress read from printed lines
    progress_total: Optional[int] = None     # progress.total: the step the run ends at
    log_max_bytes: int = 64 * 1024 * 1024

    @classmethod
    def load(cls, job: JobDir, started: Optional[float] = None) -> "RunPlan":
        """started: when this agent run began; limits.max_hours counts from it."""
        doc = read_json(job.spec)
        if doc is None:
            raise FileNotFoundError(f"{job.spec} is missing: the launcher writes it before start")
        spec, run = doc["spec"], doc["job"]
        hb = spec.get("heartbeat") or {}
        restart = spec.get("restart") or {}
        backup = spec.get("backup") or {}
        limits = spec.get("limits") or {}
        watch = spec.get("watch") or {}
        grace = float((spec.get("stop") or {}).get("grace_s", 120.0))
        started = time.time() if started is None else started
        deadlines = [d for d in (run.get("deadline_at"),
                                 started + float(limits["max_hours"]) * 3600 if limits.get("max_hours") else None)
                     if d is not None]
        budget = min(deadlines) - started if deadlines else 0.0
        margin = limits.get("margin_s")
        if margin is None:  # time for a checkpoint and a backup, but never most of a short run
            margin = min(grace + 180.0, 0.1 * budget)
        mirror = str(backup.get("mirror") or "")
        hub = run.get("hub") or {}
        if spec.get("stages"):
            stages = tuple(Stage(s["name"], s["run"]) for s in spec["stages"])
        else:
            stages = (Stage("main", run["command"]),)
        return cls(
            job_id=run["id"],
            name=spec["name"],
            project=run["project"],
            stages=stages,
            env={str(k): str(v) for k, v in (spec.get("env") or {}).items()},
            setup=spec.get("setup"),
            setup_key=run.get("setup_key"),
            heartbeat_every_s=float(hb.get("every_s", 10.0)),
            stall_after_s=float(hb.get("stall_after_s", 900.0)),
            grace_s=grace,
            restart_max=int(restart.get("max", 3)),
            restart_on=tuple(FailureClass(c) for c in restart.get("on", ["infra", "stall"])),
            restart_backoff_s=float(restart.get("backoff_s", 30.0)),
            backup_every_s=float(backup.get("every_min", 30.0)) * 60.0,
            backup_keep=int(backup.get("keep", 3)),
            backup_link=backup.get("mode", "link") == "link",
            backup_wait_s=float(backup.get("wait_s", 600.0)),
            stop_on_backup_disk_full=backup.get("on_disk_full", "continue") == "stop",
            mirror_repo=mirror[len("hf://"):] if mirror.startswith("hf://") else None,
            mirror_wait_s=float(backup.get("mirror_wait_s", 1800.0)),
            hub_endpoint=hub.get("endpoint"),
            hub_disable_xet=hub.get("disable_xet"),
            deadline_at=min(deadlines) if deadlines else None,
            deadline_margin_s=float(margin),
            min_disk_free_gb=watch.get("min_disk_free_gb"),
            max_ram_percent=watch.get("max_ram_percent"),
            max_gpu_mem_percent=watch.get("max_gpu_mem_percent"),
            max_usd=limits.get("max_usd"),
            price_per_hour=run.get("price_per_hour"),
            instance_created=run.get("instance_created"),
            autodown=bool(run.get("autodown")),
            autodown_wait_s=float(run.get("autodown_wait_s") or 3600.0),
            resume_first=bool(run.get("resume_first")),
            path_prepend=list(run.get("path_prepend") or []),
            python=run.get("python_executable"),
            progress_pattern=(spec.get("progress") or {}).get("pattern"),
            progress_total=(spec.get("progress") or {}).get("total"),
        )
