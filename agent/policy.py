"""How a finished attempt is judged, and whether it earns a restart."""

from __future__ import annotations

import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from .protocol import FailureClass, JobState


@dataclass(frozen=True)
class Verdict:
    state: JobState
    reason: str
    failure: Optional[FailureClass] = None
    exit_code: Optional[int] = None


def judge_exit(returncode: int, what: str = "workload", *, oom_killed: bool = False,
               disk_full: bool = False) -> Verdict:
    """A finished child's exit status as a verdict, with its failure class."""
    if returncode == 0:
        return Verdict(JobState.SUCCEEDED, f"{what} exited with code 0", None, 0)
    if oom_killed:
        return Verdict(JobState.FAILED, f"{what} was killed by the out-of-memory killer",
                       FailureClass.INFRA, returncode)
    if disk_full:
        return Verdict(JobState.FAILED, f"{what} exited with code {returncode}: disk full",
                       FailureClass.INFRA, returncode)
    if returncode < 0:  # "out of memory" is said only on the OOM killer's evidence (above)
        try:
            sig = signal.Signals(-returncode).name
        except ValueError:
            sig = f"signal {-returncode}"
        return Verdict(JobState.FAILED, f"{what} killed by {sig}", FailureClass.INFRA, returncode)
    return Verdict(JobState.FAILED, f"{what} exited with code {returncode}", FailureClass.USER, returncode)


def wants_restart(v: Verdict, on: Sequence[FailureClass], max_restarts: int, done: int) -> bool:
    return v.state == JobState.FAILED and v.failure in on and done < max_restarts


def oom_kill_count() -> Optional[int]:
    """The oom_kill counter of this process's cgroup (v2), or None where it cannot be read."""
    try:
        line = Path("/proc/self/cgroup").read_text().splitlines()[0]
        rel = line.split("::", 1)[1] if "::" in line else None
        if rel is None:
            return None
        for text in (Path("/sys/fs/cgroup") / rel.lstrip("/") / "memory.events").read_text().splitlines():
            key, _, value = text.partition(" ")
            if key == "oom_kill":
                return int(value)
    except (OSError, IndexError, ValueError):
        return None
    return None


def looks_disk_full(path: Path, log_tail: bytes) -> bool:
    try:
        du = shutil.disk_usage(path)
        if du.free < 64 * 1024 * 1024 or du.free / du.total < 0.002:
            return True
    except OSError:
        pass
    return b"No space left on device" in log_tail
