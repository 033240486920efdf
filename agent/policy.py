"""How an attempt is judged, and whether it earns a restart: pure functions of what the
monitor loop observed (no processes, no clock), as torch elastic's agent turns what
_monitor_workers saw into a WorkerState."""

from __future__ import annotations

import shutil
import signal
from dataclasses import dataclass
from enum import Enum
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


class Act(str, Enum):
    WAIT = "wait"          # the attempt runs and is well: keep watching
    STOP = "stop"          # a stop was asked for (control, deadline, budget, SIGTERM): terminate it
    STALLED = "stalled"    # no sign of life for too long: take its stacks, kill it
    ENDED = "ended"        # it exited by itself


@dataclass(frozen=True)
class Observation:
    """What the loop saw of one attempt at one tick."""
    returncode: Optional[int] = None      # set once the attempt's process has exited
    quiet_s: float = 0.0                  # seconds without a sign of life (progress, else output)
    stop_reason: Optional[str] = None     # a stop asked for, and why
    stop_failure: Optional[FailureClass] = None
    watched: bool = True                  # stall detection applies (not to setup)
    oom_killed: bool = False              # read only once it exited
    disk_full: bool = False
    what: str = "workload"


@dataclass(frozen=True)
class Judgement:
    act: Act
    verdict: Optional[Verdict] = None


def judge(obs: Observation, stall_after_s: float) -> Judgement:
    """An exit is judged first (a workload that finished as it was told to stop has finished),
    then a stop request, then silence."""
    if obs.returncode is not None:
        return Judgement(Act.ENDED, judge_exit(obs.returncode, obs.what, oom_killed=obs.oom_killed,
                                               disk_full=obs.disk_full))
    if obs.stop_reason is not None:
        return Judgement(Act.STOP, Verdict(JobState.STOPPED, obs.stop_reason, obs.stop_failure))
    if obs.watched and obs.quiet_s > stall_after_s:
        return Judgement(Act.STALLED, Verdict(JobState.FAILED, f"no progress for {obs.quiet_s:.0f}s",
                                              FailureClass.STALL))
    return Judgement(Act.WAIT)


def after_attempt(v: Verdict, on: Sequence[FailureClass], max_restarts: int, done: int) -> Optional[Verdict]:
    """None: restart it. Else the job's verdict (a failure past its restarts says so)."""
    if wants_restart(v, on, max_restarts, done):
        return None
    if v.state == JobState.FAILED and done:
        return Verdict(v.state, f"{v.reason} (gave up after {done} restart(s))", v.failure, v.exit_code)
    return v


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
