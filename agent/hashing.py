"""sha256 as every manifest, code delta and pull computes it, the same on both sides. Light to
load: a pull's host side runs before the agent's other modules load (pull_files.py)."""

from __future__ import annotations

import hashlib
import queue
import threading
from pathlib import Path
from typing import Any, Optional


def sha256_file(path: Path) -> str:
    """The digest every manifest and code delta compares, computed the same on both sides."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class BackgroundHash:
    """sha256 on a thread of its own, fed block by block: hashlib releases the GIL while it
    hashes, so a file is hashed while its next block is read or sent (a pull reads each file
    once on either side, and waits for neither hash)."""

    def __init__(self, start: Optional[Any] = None) -> None:
        self._h = start if start is not None else hashlib.sha256()
        self._blocks: "queue.Queue[Optional[bytes]]" = queue.Queue(maxsize=16)  # at most 16 blocks held
        self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            block = self._blocks.get()
            if block is None:
                return
            self._h.update(block)

    def update(self, block: bytes) -> None:
        self._blocks.put(block)

    def hexdigest(self) -> str:
        """Waits for the blocks handed over so far, then ends the thread."""
        self._blocks.put(None)
        self._thread.join()
        return self._h.hexdigest()
