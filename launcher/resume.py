"""`tether resume JOB`: start a stopped, failed or LOST job's agent again on its host; it
continues from the newest verified backup and skips finished stages."""

from __future__ import annotations

import json
from typing import Mapping

from .agent_client import AgentClient
from .errors import RemoteError, SpecError
from .jobs import JobRecord, Registry


def resume(client: AgentClient, rec: JobRecord, environ: Mapping[str, str], registry: Registry) -> str:
    spec = client.call("spec", rec.job_dir) or {}
    secrets = {}
    for name in spec.get("secrets") or []:
        if name not in environ:
            raise SpecError(f"secret {name} of job {rec.id} is not set in the environment",
                            f"export {name} before resuming")
        secrets[name] = environ[name]
    prepared = client.call("prepare-resume", rec.job_dir, input=json.dumps(secrets).encode())
    started = client.call("start", rec.job_dir, timeout=60)
    if not started.get("started"):
        raise RemoteError(f"the agent did not start again: {(started.get('log_tail') or '').strip()[-300:]}")
    registry.set_state(rec.id, "RUNNING")
    return prepared.get("previous_state") or "unknown"
