"""Reads progress.jsonl incrementally: the newest step and metrics, and when they came."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, Optional


class ProgressReader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self._partial = b""
        self.step: Optional[int] = None
        self.metrics: Dict[str, Any] = {}
        self.last_at: Optional[float] = None  # when the agent last saw a new line
        self.last_checkpoint: Optional[str] = None   # path relative to checkpoints/
        self.checkpoint_step: Optional[int] = None
        self.checkpoint_seq = 0                       # announcements seen so far

    def poll(self) -> bool:
        """Read what was appended since the last call; True if a new line arrived."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return False
        if not chunk:
            return False
        self.offset += len(chunk)
        data = self._partial + chunk
        *lines, self._partial = data.split(b"\n")
        seen = False
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if not isinstance(rec, dict):
                continue
            seen = True
            if isinstance(rec.get("step"), int):
                self.step = rec["step"]
            if rec.get("checkpoint"):
                self.last_checkpoint = str(rec["checkpoint"])
                self.checkpoint_step = rec["step"] if isinstance(rec.get("step"), int) else None
                self.checkpoint_seq += 1
            metrics = {k: v for k, v in rec.items() if k not in ("step", "time", "checkpoint")}
            if metrics:  # a checkpoint announcement alone keeps the last metrics
                self.metrics = metrics
        if seen:
            self.last_at = time.time()
        return seen
