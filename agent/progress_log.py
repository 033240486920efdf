"""`progress: {pattern: 'iter (?P<step>\\d+): loss (?P<loss>[\\d.]+)', total: 5000}`: a script that
only prints its progress gets it read from its own output. Each matching line becomes a
progress record (named groups are metrics, `step` the step), appended to progress.jsonl like
the workload's own reports, so status, stall detection and backups see it the same way."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Dict, Optional, Union

from .files import append_jsonl

MAX_LINE = 4096   # a longer line is not a progress line (and is not buffered forever)


class LogProgress:
    def __init__(self, pattern: str, progress_file: Path) -> None:
        self.pattern = re.compile(pattern)
        self.progress_file = progress_file
        self._partial = b""
        self.matches = 0

    def feed(self, chunk: bytes) -> None:
        """Called with each chunk of the workload's output (on the log pump's thread)."""
        data = self._partial + chunk
        *lines, self._partial = data.split(b"\n")
        if len(self._partial) > MAX_LINE:
            self._partial = b""
        for raw in lines:
            record = self.record(raw[:MAX_LINE].decode(errors="replace").rstrip("\r"))
            if record is not None:
                try:
                    append_jsonl(self.progress_file, record)
                except OSError:
                    pass  # a full disk: this line of progress is lost, the next may land

    def record(self, line: str) -> Optional[Dict[str, Union[int, float, str]]]:
        m = self.pattern.search(line)
        if m is None:
            return None
        self.matches += 1
        groups = {k: v for k, v in m.groupdict().items() if v is not None}
        step = groups.pop("step", None)
        record: Dict[str, Union[int, float, str]] = {
            "step": int(step) if step is not None and step.isdigit() else self.matches, "time": time.time()}
        for name, value in groups.items():
            record[name] = _number(value)
        return record


def _number(text: str) -> Union[int, float, str]:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text[:200]
