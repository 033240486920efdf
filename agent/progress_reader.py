"""Reads progress.jsonl incrementally: the newest step and metrics, when they came, the rate
and (with a total) the time left, and which checkpoints were announced."""

from __future__ import annotations

import collections
import json
import time
from pathlib import Path
from typing import Any, Deque, Dict, List, Optional, Tuple

RESERVED = ("step", "time", "checkpoint", "total")
RATE_WINDOW = 50   # step changes the rate is measured over


class ProgressReader:
    def __init__(self, path: Path, total: Optional[int] = None) -> None:
        self.path = path
        self.offset = 0
        self._partial = b""
        self.step: Optional[int] = None
        self.metrics: Dict[str, Any] = {}
        self.total = total                    # the spec's progress.total, or a workload's "total"
        self.last_at: Optional[float] = None  # when the agent last saw a new line
        self.last_checkpoint: Optional[str] = None   # path relative to checkpoints/
        self.checkpoint_step: Optional[int] = None
        self.checkpoint_seq = 0                       # announcements seen so far
        self.announced: List[Tuple[str, Optional[int]]] = []   # every (path, step), oldest first
        self._rate: Deque[Tuple[float, int]] = collections.deque(maxlen=RATE_WINDOW)
        self.first_step_since_mark: Optional[int] = None

    def mark(self) -> None:
        """An attempt starts: remember the first step it reports (did it resume?)."""
        self.poll()
        self.first_step_since_mark = None
        self._rate.clear()

    def resumed_at(self, step: Optional[int]) -> None:
        """The step a resume starts from: what status shows until the workload reports more
        (a job resumed on a fresh host has no progress of its own yet)."""
        if self.step is None and step is not None:
            self.step = step

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
            if isinstance(rec, dict):
                seen = True
                self._take(rec)
        if seen:
            self.last_at = time.time()
        return seen

    def _take(self, rec: Dict[str, Any]) -> None:
        step = rec.get("step")
        if isinstance(step, int) and not isinstance(step, bool):
            if self.first_step_since_mark is None:
                self.first_step_since_mark = step
            if step != self.step:
                at = rec.get("time")
                self._rate.append((float(at) if isinstance(at, (int, float)) else time.time(), step))
            self.step = step
        total = rec.get("total", rec.get("max_steps"))  # max_steps: as some loops name it
        if isinstance(total, int) and not isinstance(total, bool) and total > 0:
            self.total = total
        if rec.get("checkpoint"):
            self.last_checkpoint = str(rec["checkpoint"])
            self.checkpoint_step = self.step if isinstance(step, int) else None
            self.checkpoint_seq += 1
            self.announced.append((self.last_checkpoint, self.checkpoint_step))
            del self.announced[:-100]
        metrics = {k: v for k, v in rec.items() if k not in RESERVED}
        if metrics:  # a checkpoint announcement alone keeps the last metrics
            self.metrics = metrics

    @property
    def steps_per_s(self) -> Optional[float]:
        if len(self._rate) < 2:
            return None
        (t0, s0), (t1, s1) = self._rate[0], self._rate[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 and s1 > s0 else None

    @property
    def eta_s(self) -> Optional[float]:
        rate = self.steps_per_s
        if not rate or not self.total or self.step is None:
            return None
        return max(0.0, (self.total - self.step) / rate)
