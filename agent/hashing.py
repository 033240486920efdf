"""sha256 on a thread of its own, fed block by block: hashlib releases the GIL while it hashes,
so a file's hash is computed while the next block is read or sent (a pull reads each file
once on either side, and waits for neither hash)."""

from __future__ import annotations

import hashlib
import queue
import threading
from typing import Any, Optional


class BackgroundHash:
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
