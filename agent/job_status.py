"""`python -m agent status`: a job as its host sees it, read from the files the agent keeps.

Users ask this many times an hour, and each ask starts Python on the host: this module loads
only the standard library's light parts (no argparse, dataclasses or the message classes), and
__main__.py runs it before anything else is imported.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

from .book import agent_alive
from .files import read_json_object
from .paths import JobDir
from .states import PROTOCOL, JobState

RECENT_ENV = "TETHER_STATUS_RECENT"   # protocol.STATUS_RECENT_ENV (not imported: see above)
MAX_RECENT = 512


def main_status(job_dirs: List[str]) -> int:
    """Every job's answer as one JSON list on stdout."""
    recent = os.environ.get(RECENT_ENV, "")
    rows = min(int(recent), MAX_RECENT) if recent.isascii() and recent.isdigit() else 0
    try:
        answers = [status(JobDir(p), rows) for p in job_dirs]
    except (ValueError, OSError) as exc:
        print(str(exc), file=sys.stderr)  # the launcher says what was being done
        return 2
    sys.stdout.write(json.dumps(answers) + "\n")
    sys.stdout.flush()
    return 0


def _with_age(doc: Optional[dict], key: str, now: float) -> dict:
    """doc plus `<key>_age_s` by this host's clock (the laptop's may differ)."""
    doc = dict(doc or {})
    if doc.get(key):
        doc[key.replace("_at", "_age_s")] = round(now - doc[key], 1)
    return doc


DISK_FULL_BYTES = 64 * 1024 * 1024
STATE_VALUES = {s.value for s in JobState}
TERMINAL_VALUES = {s.value for s in JobState if s.is_terminal}


def _state_value(doc: dict) -> Optional[str]:
    """The state a state.json records, if it is one (the workload could have written there)."""
    value = doc.get("state")
    return value if isinstance(value, str) and value in STATE_VALUES else None


def job_ended(job: JobDir) -> bool:
    """Its state is terminal, or no agent runs it any more (a log follower stops then)."""
    state = _state_value(read_json_object(job.state)[0] or {})
    return state in TERMINAL_VALUES or not agent_alive(job)


def disk_warning(path: Path) -> Optional[str]:
    """Read when status is asked, not from the heartbeat (which a full disk stops being written)."""
    try:
        st = os.statvfs(path)  # what shutil.disk_usage reads (shutil itself is a slow import)
    except OSError:
        return None
    free, total = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
    if free < min(DISK_FULL_BYTES, total * 0.01):
        return f"disk full: {free // (1024 * 1024)} MB free on the job's disk"
    return None


def status(job: JobDir, recent: int = 0) -> dict:
    """The job's state as the host sees it, with LOST inferred from the agent's lock; with
    recent > 0 also its progress thinned to that many rows (`tether status` draws them), so a
    status is one call."""
    answer = _status(job)
    if recent > 0 and answer["exists"]:
        from .history import recent_progress

        answer["recent"] = recent_progress(job, recent)
    return answer


def _status(job: JobDir) -> dict:
    now = time.time()
    if not job.path.is_dir():
        return {"job_dir": str(job.path), "exists": False, "now": now}
    st = read_json_object(job.state)[0] or {}
    hb = read_json_object(job.heartbeat)[0] or {}
    alive = agent_alive(job)
    recorded = _state_value(st)
    state = recorded or JobState.PENDING.value
    reason = st.get("reason")
    if not alive and not JobState(state).is_terminal:
        reason = f"agent is not running (last state {state}): host rebooted, preempted or agent killed"
        state = JobState.LOST.value
    return {
        "protocol": PROTOCOL,
        "job_dir": str(job.path),
        "exists": True,
        "state": state,
        "reason": reason,
        "failure": st.get("failure"),
        "exit_code": st.get("exit_code"),
        "attempt": st.get("attempt", 0),
        "stage": st.get("stage"),
        "started_at": st.get("started_at"),
        "ended_at": st.get("ended_at"),
        "heartbeat_age_s": _age(hb.get("time"), now),
        "last_output_age_s": _age(hb.get("last_output_at"), now),
        "last_progress_age_s": _age(hb.get("last_progress_at"), now),
        "step": hb.get("step"),
        "metrics": hb.get("metrics") or {},
        "total_steps": hb.get("total_steps"),
        "steps_per_s": hb.get("steps_per_s") if alive else None,
        "eta_s": hb.get("eta_s") if alive else None,
        "resources": hb.get("resources") or {},
        "warnings": ([w] if (w := disk_warning(job.path)) else []) + list(hb.get("warnings") or []),
        "backup": hb.get("backup") or {},
        "mirror": _with_age(hb.get("mirror"), "pushed_at", now) if hb.get("mirror") else None,
        "resumed_unverified": bool(st.get("resumed_unverified")),
        "log_tail": _failure_log_tail(job, state, reason),
        "deadline_at": hb.get("deadline_at"),
        "spend_usd": hb.get("spend_usd"),
    }


FAILURE_TAIL_LINES = 15


def _tail(path: Path, lines: int) -> bytes:
    from .logread import tail_bytes

    return tail_bytes(path, lines)


def _failure_log_tail(job: JobDir, state: str, reason: object) -> list:
    """A failed job's last log lines (the error), so status shows it without a second command."""
    if state != JobState.FAILED.value:
        return []
    path = job.setup_log if isinstance(reason, str) and "setup.log" in reason else job.workload_log
    return _tail(path, FAILURE_TAIL_LINES).decode(errors="replace").splitlines()


def _age(at: object, now: float) -> Optional[float]:
    """Seconds since `at` by this host's clock (the laptop's may differ)."""
    return round(now - at, 1) if isinstance(at, (int, float)) and not isinstance(at, bool) else None
