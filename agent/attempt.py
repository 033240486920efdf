"""One attempt: a child (the workload, or setup) in its own process group, its output pumped
into its log on a thread. It owns the process; the monitor loop only asks it questions and
tells it to stop. (torch elastic's PContext for one local worker.)"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Callable, Dict, List, Optional

from .logfile import LogPump, RotatingLog

KILL_WAIT_S = 30.0  # a process SIGKILLed but not gone by then is in the kernel's hands (D state)


class Attempt:
    def __init__(self, argv: List[str], cwd: Path, env: Dict[str, str], log: RotatingLog,
                 on_output: Optional[Callable[[bytes], None]] = None, started: float = 0.0) -> None:
        self.log = log
        self.started = started  # the loop's monotonic clock when it began
        self.proc = subprocess.Popen(argv, cwd=str(cwd), env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.proc.pid  # also its process group
        assert self.proc.stdout is not None
        self.pump = LogPump(self.proc.stdout, log, on_output)

    def poll(self) -> Optional[int]:
        return self.proc.poll()

    @property
    def last_output_at(self) -> Optional[float]:
        return self.pump.last_output_at

    @property
    def dropped(self) -> str:
        """What the log could not take, in words, or ''."""
        if not self.pump.dropped_bytes:
            return ""
        return (f"{self.pump.dropped_bytes} bytes of the workload's output were dropped: "
                f"the log could not be written ({self.pump.drop_reason})")

    def signal(self, sig: int) -> None:
        """To the whole group: the workload and whatever it started."""
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def kill(self) -> Optional[int]:
        self.signal(signal.SIGKILL)
        try:
            return self.proc.wait(KILL_WAIT_S)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        """Leftovers of the group killed, the output drained, the log closed."""
        self.signal(signal.SIGKILL)
        self.pump.join()
        self.log.close()


class SignsOfLife:
    """When the loop last saw an attempt's progress or output, on the loop's own clock: the
    readers' timestamps are only compared with what they were at the last tick."""

    def __init__(self) -> None:
        self.reset(0.0, None, None)

    def reset(self, started: float, progress_at: Optional[float], output_at: Optional[float]) -> None:
        self.started = started
        self.progress: Optional[float] = None
        self.output: Optional[float] = None
        self._seen = (progress_at, output_at)

    def note(self, now: float, progress_at: Optional[float], output_at: Optional[float]) -> None:
        if progress_at != self._seen[0]:
            self.progress = now
        if output_at != self._seen[1]:
            self.output = now
        self._seen = (progress_at, output_at)

    def quiet_s(self, now: float, reports_progress: bool) -> float:
        """Seconds without a sign of life: progress lines if the workload reports them (in
        this attempt or an earlier one), else its output, counted from the attempt's start."""
        if self.progress is not None:
            last = self.progress
        elif not reports_progress and self.output is not None:
            last = self.output
        else:
            last = self.started
        return now - last
