"""A size-rotated log fed from a pipe, so a chatty workload never fills the disk, and a full
disk never blocks the workload: output that cannot be stored is dropped and counted."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import IO, Callable, Optional


class RotatingLog:
    def __init__(self, path: Path, max_bytes: int = 64 * 1024 * 1024, keep: int = 3) -> None:
        self.path, self.max_bytes, self.keep = path, max_bytes, keep
        self._fd: Optional[int] = None
        self._size = 0
        self._open()

    def _open(self) -> None:
        try:
            self._fd = os.open(str(self.path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._size = os.fstat(self._fd).st_size
        except OSError:
            self._fd = None  # tried again at the next write

    def write(self, data: bytes) -> None:
        """All of data, or OSError (ENOSPC...) with the file holding a prefix of it at most."""
        if self._fd is None:
            self._open()
            if self._fd is None:
                raise OSError(f"cannot open {self.path}")
        if self._size + len(data) > self.max_bytes and self._size > 0:
            self._rotate()
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)  # raises on ENOSPC; a short write loops
            self._size += n
            view = view[n:]

    def _rotate(self) -> None:
        self.close()
        for i in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._open()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class LogPump:
    """Copies a child's output pipe into a RotatingLog on a thread; remembers when it last spoke.
    The pipe is always drained, so the workload never blocks on its stdout; what the log
    cannot take (a full disk) is counted in dropped_bytes."""

    def __init__(self, pipe: IO[bytes], log: RotatingLog,
                 on_output: Optional[Callable[[bytes], None]] = None) -> None:
        self.pipe, self.log, self.on_output = pipe, log, on_output
        self.last_output_at: Optional[float] = None
        self.dropped_bytes = 0
        self.drop_reason: Optional[str] = None
        self._thread = threading.Thread(target=self._pump, name="log-pump", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        fd = self.pipe.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.last_output_at = time.time()
            try:
                self.log.write(chunk)
            except OSError as exc:
                self.dropped_bytes += len(chunk)
                self.drop_reason = exc.strerror or str(exc)
            if self.on_output is not None:
                self.on_output(chunk)

    def join(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)
