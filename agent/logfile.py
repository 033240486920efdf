"""A size-rotated log fed from a pipe, so a chatty workload never fills the disk."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import IO, Optional


class RotatingLog:
    def __init__(self, path: Path, max_bytes: int = 64 * 1024 * 1024, keep: int = 3) -> None:
        self.path, self.max_bytes, self.keep = path, max_bytes, keep
        self._f: IO[bytes] = open(path, "ab")

    def write(self, data: bytes) -> None:
        if self._f.tell() + len(data) > self.max_bytes and self._f.tell() > 0:
            self._rotate()
        self._f.write(data)
        self._f.flush()

    def _rotate(self) -> None:
        self._f.close()
        for i in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._f = open(self.path, "ab")

    def close(self) -> None:
        self._f.close()


class LogPump:
    """Copies a child's output pipe into a RotatingLog on a thread; remembers when it last spoke."""

    def __init__(self, pipe: IO[bytes], log: RotatingLog) -> None:
        self.pipe, self.log = pipe, log
        self.last_output_at: Optional[float] = None
        self._thread = threading.Thread(target=self._pump, name="log-pump", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        fd = self.pipe.fileno()
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            self.log.write(chunk)
            self.last_output_at = time.time()

    def join(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)
