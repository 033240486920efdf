"""Output for people: one console, progress bars that appear only for slow transfers."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from rich.console import Console


class TransferProgress:
    """Feed it byte counts; after a second of transfer it shows a bar (on a terminal). rich's
    progress module loads then: a launch with nothing to send never pays for it."""

    def __init__(self, console: Console, label: str, total: int, show_after_s: float = 1.0) -> None:
        self.console, self.label, self.total = console, label, total
        self.started = time.monotonic()
        self.show_after_s = show_after_s
        self.done = 0
        self._bar: Optional[Any] = None
        self._task = None
        self._terminal: Optional[bool] = None   # asked once: rich's is_terminal reads the environment

    def __call__(self, n: int) -> None:
        """Called once a file (10,000 times for a first sync): the clock is read first."""
        self.done += n
        if self._bar is None:
            if time.monotonic() - self.started < self.show_after_s:
                return
            if self._terminal is None:
                self._terminal = self.console.is_terminal
            if not self._terminal:
                return
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

            self._bar = Progress(TextColumn(self.label), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), console=self.console, transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total)
        self._bar.update(self._task, completed=self.done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
