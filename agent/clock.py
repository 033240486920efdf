"""The agent's one source of time, passed in: the monitor loop, its duties and its waits read
the clock they were given, so tests drive hours of a job in milliseconds with a FakeClock."""

from __future__ import annotations

import time
from typing import Callable, List, Protocol, Tuple


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def time(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class RealClock:
    """The wall and the monotonic clock of this host."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


REAL = RealClock()


class FakeClock:
    """Time that moves only when someone sleeps (or a test calls advance); callbacks set with
    at() run once their moment has come, so a test can script "at t=30 the workload exits"."""

    def __init__(self, wall: float = 1_700_000_000.0) -> None:
        self.now = 1000.0          # monotonic
        self.offset = wall - self.now
        self.slept = 0.0
        self._due: List[Tuple[float, int, Callable[[], None]]] = []
        self._count = 0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now + self.offset

    def sleep(self, seconds: float) -> None:
        self.slept = round(self.slept + max(0.0, seconds), 6)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.now = round(self.now + max(0.0, seconds), 6)  # no drift from summing 0.2s
        due = sorted((d for d in self._due if d[0] <= self.now), key=lambda d: d[:2])
        self._due = [d for d in self._due if d[0] > self.now]
        for _, _, fn in due:
            fn()

    def at(self, after_s: float, fn: Callable[[], None]) -> None:
        self._count += 1
        self._due.append((self.now + after_s, self._count, fn))
