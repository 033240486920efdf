"""`agent run`: the job's lock first, then the monitor loop (supervisor.py). `agent start`,
and so a launch, waits until an agent holds the lock: taken before the loop's modules load,
that wait is Python's start, not the monitor's imports as well."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, Optional

from .book import AgentLock, StatusBook
from .hub_client import keep_memory_private
from .paths import JobDir
from .states import FailureClass, JobState


def main_run(job_path: str, secrets_on_stdin: bool = False) -> int:
    keep_memory_private()
    secrets: Optional[Dict[str, str]] = None
    if secrets_on_stdin:  # from `start`, through a pipe: never a file
        raw = sys.stdin.buffer.read()
        secrets = {str(k): str(v) for k, v in (json.loads(raw) if raw.strip() else {}).items()}
    job = JobDir(Path(job_path).resolve())
    job.make_dirs()
    lock = AgentLock(job)
    if not lock.acquire():
        print(f"another agent is already running job {job.path}", file=sys.stderr)
        return 3
    try:
        from .code_snapshot import wait_for_code
        from .plan import RunPlan
        from .supervisor import Supervisor
        from .workload_env import runtime_dir

        missing = wait_for_code(job)  # the launch answered before its snapshot was whole
        if missing is not None:
            StatusBook(job).set(JobState.FAILED, missing, FailureClass.INFRA)
            return 1
        supervisor = Supervisor(job, RunPlan.load(job), runtime_dir())
    except Exception as exc:  # start already said "started": the job says why it ended, not LOST
        StatusBook(job).set(JobState.FAILED, f"the agent could not start: {exc!r}"[:500], FailureClass.INFRA)
        raise
    state = supervisor.run(secrets)
    return 0 if state == JobState.SUCCEEDED else 1
