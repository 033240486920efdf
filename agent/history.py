"""Metric history for the laptop's plots: progress.jsonl, heartbeats.jsonl and events.jsonl,
read incrementally (a cursor per file: only new lines travel) and thinned (min/max kept).

The agent keeps progress-summary.json current as lines arrive (HistoryKeeper, at every
heartbeat), so a job with a million progress lines is answered from the summary plus the few
lines after it, not by parsing the whole file again.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from .files import write_bytes_atomic
from .paths import JobDir
from .rows import HISTORY_KEYS, MAX_METRICS, downsample

KEEP_ROWS = 2000                  # the summary's resolution (the laptop asks for at most this)
READ_BYTES = 8 * 1024 * 1024      # one answer or one tick reads at most this much of a file
LINE_BYTES = 64 * 1024            # a longer line is not a metric line
HEARTBEATS_CAP = 4 * 1024 * 1024  # heartbeats.jsonl is halved (every other line) past this
SUMMARY_EVERY_S = 10.0
SUMMARY_BYTES = 16 * 1024 * 1024  # a bigger progress-summary.json was not written by the agent
EVENT_ROWS = 500                  # events: the newest this many
EVENT_FIELDS = ("event", "state", "reason", "failure", "step", "name", "attempt", "error", "quiet_s")


# Plain classes, not dataclasses: `agent status` loads this module for its sparkline rows, and
# dataclasses (with inspect) is the biggest import of that command on the host.
class Cursor:
    """Where a reader stopped in a file: its inode (a new one means the file was replaced:
    read again from the start), byte offset, and lines seen."""

    __slots__ = ("ino", "offset", "lines")

    def __init__(self, ino: int = 0, offset: int = 0, lines: int = 0) -> None:
        self.ino, self.offset, self.lines = ino, offset, lines

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cursor) and str(self) == str(other)

    def __repr__(self) -> str:
        return f"Cursor({self})"

    @classmethod
    def parse(cls, text: object) -> "Cursor":
        try:
            ino, offset, lines = (int(x) for x in str(text).split(":"))
            return cls(ino, offset, lines) if min(ino, offset, lines) >= 0 else cls()
        except ValueError:
            return cls()

    def __str__(self) -> str:
        return f"{self.ino}:{self.offset}:{self.lines}"


class Chunk:
    __slots__ = ("lines", "cursor", "reset", "more")

    def __init__(self, lines: List[bytes], cursor: Cursor, reset: bool, more: bool) -> None:
        self.lines, self.cursor = lines, cursor
        self.reset = reset   # the reader's earlier rows are void (file replaced or new reader)
        self.more = more     # the file holds more than was read


def read_lines(path: Path, cursor: Cursor, max_bytes: int = READ_BYTES) -> Chunk:
    """Whole lines after cursor, at most max_bytes of them."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            reset = cursor.ino != st.st_ino or cursor.offset > st.st_size
            start = Cursor(st.st_ino) if reset else cursor
            f.seek(start.offset)
            data = f.read(max_bytes)
    except FileNotFoundError:
        return Chunk([], Cursor(), cursor.ino != 0, False)
    end = data.rfind(b"\n") + 1
    if end == 0 and len(data) == max_bytes:  # one line longer than a whole read: skip it
        end = len(data)
    lines = data[:end].split(b"\n")[:-1] if end else []
    more = start.offset + end < st.st_size
    return Chunk(lines, Cursor(st.st_ino, start.offset + end, start.lines + len(lines)), reset, more)


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def parse_row(line: bytes, n: int) -> Optional[Dict[str, Any]]:
    """A progress line (or heartbeat sample) as a history row, or None if it holds no metric."""
    if len(line) > LINE_BYTES:
        return None
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    metrics: Dict[str, float] = {}
    for k, v in doc.items():
        num = _number(v)
        if num is not None and k not in HISTORY_KEYS and len(metrics) < MAX_METRICS:
            metrics[str(k)[:64]] = num
    if not metrics:
        return None
    step = doc.get("step")
    return {"n": n, "step": step if isinstance(step, int) and not isinstance(step, bool) else None,
            "time": _number(doc.get("time")), "m": metrics}


def rows_of(chunk: Chunk, first_n: int) -> List[Dict[str, Any]]:
    rows = (parse_row(line, first_n + i) for i, line in enumerate(chunk.lines))
    return [r for r in rows if r is not None]


class Summary:
    """A file's rows, thinned as they grow, and the cursor up to which they cover it."""

    def __init__(self, cursor: Optional[Cursor] = None, rows: Optional[List[Dict[str, Any]]] = None) -> None:
        self.cursor = cursor or Cursor()
        self.rows: List[Dict[str, Any]] = rows if rows is not None else []

    def feed(self, chunk: Chunk) -> None:
        if chunk.reset:
            self.rows = []
        self.rows += rows_of(chunk, chunk.cursor.lines - len(chunk.lines))
        self.cursor = chunk.cursor
        if len(self.rows) > 2 * KEEP_ROWS:
            self.rows = downsample(self.rows, KEEP_ROWS)

    @classmethod
    def load(cls, path: Path) -> "Summary":
        """The saved summary; a missing or damaged one (a workload can write there) is empty."""
        try:
            if path.stat().st_size > SUMMARY_BYTES:  # not ours: the agent writes a few hundred KB
                return cls()
            doc = json.loads(path.read_bytes())
            rows = [r for r in doc["rows"] if isinstance(r, dict) and isinstance(r.get("m"), dict)
                    and isinstance(r.get("n"), int)]
            return cls(Cursor.parse(doc["cursor"]), rows)
        except (OSError, ValueError, KeyError, TypeError):
            return cls()

    def save(self, path: Path) -> None:
        write_bytes_atomic(path, json.dumps({"cursor": str(self.cursor), "rows": self.rows}).encode())


def heartbeat_sample(resources: Dict[str, Any], step: Optional[int], rss_mb: Optional[float]) -> Dict[str, Any]:
    """One heartbeats.jsonl line: the host's resources flattened to named numbers."""
    sample: Dict[str, Any] = {"time": round(time.time(), 2), "step": step}
    for key in ("ram_used_gb", "disk_free_gb", "cpu_percent", "load_1m"):
        if resources.get(key) is not None:
            sample[key] = resources[key]
    if rss_mb is not None:
        sample["workload_rss_mb"] = rss_mb
    for g in resources.get("gpus") or []:
        i = g.get("index", 0)
        for key in ("util_percent", "mem_used_mb", "temp_c"):
            if g.get(key) is not None:
                sample[f"gpu{i}_{key}"] = g[key]
    return sample


def append_sample(path: Path, sample: Dict[str, Any], cap: int = HEARTBEATS_CAP) -> None:
    """Appends a sample; past cap the file is rewritten with every other line (a new inode,
    so readers start again): the whole run stays, at half the resolution."""
    with open(path, "ab") as f:
        f.write(json.dumps(sample, separators=(",", ":")).encode() + b"\n")
        size = f.tell()
    if size > cap:  # the newest 2 x cap bytes at most: a workload may have grown the file
        with open(path, "rb") as f:
            f.seek(max(0, size - 2 * cap))
            lines = f.read().split(b"\n")[1 if size > 2 * cap else 0:-1]
        write_bytes_atomic(path, b"".join(line + b"\n" for line in lines[::2]))


class HistoryKeeper:
    """The agent's part: a heartbeat sample per heartbeat, and the progress summary kept up."""

    def __init__(self, job: JobDir) -> None:
        self.job = job
        self.summary = Summary.load(job.progress_summary)
        self.saved_at = 0.0
        self.dirty = False

    def tick(self, resources: Dict[str, Any], step: Optional[int], rss_mb: Optional[float],
             final: bool = False) -> None:
        try:
            append_sample(self.job.heartbeats, heartbeat_sample(resources, step, rss_mb))
        except OSError:
            pass  # a full disk: the plot has a gap, the heartbeat itself says why
        while True:  # READ_BYTES a tick while the job runs; at its end, all that is left
            chunk = read_lines(self.job.progress, self.summary.cursor)
            if chunk.lines or chunk.reset:
                self.summary.feed(chunk)
                self.dirty = True
            if not (final and chunk.more):
                break
        due = final or time.monotonic() - self.saved_at >= SUMMARY_EVERY_S or len(self.summary.rows) < 500
        if self.dirty and due:
            try:
                self.summary.save(self.job.progress_summary)
            except OSError:
                return  # tried again next time; readers parse the lines after the old one
            self.saved_at, self.dirty = time.monotonic(), False


# -- the `history` verb ----------------------------------------------------------------------

def _progress(job: JobDir, cursor: Optional[Cursor], max_rows: int) -> Dict[str, Any]:
    """The lines after cursor; from the start (or when the file was replaced): the saved
    summary, then the lines after it."""
    if cursor is not None and cursor.ino:
        chunk = read_lines(job.progress, cursor)
        if not chunk.reset:
            return {"rows": downsample(rows_of(chunk, cursor.lines), max_rows), "cursor": str(chunk.cursor),
                    "reset": False, "more": chunk.more}
    summary = Summary.load(job.progress_summary)
    chunk = read_lines(job.progress, summary.cursor)
    summary.feed(chunk)
    return {"rows": downsample(summary.rows, max_rows), "cursor": str(summary.cursor), "reset": True,
            "more": chunk.more}


def _heartbeats(job: JobDir, cursor: Cursor, max_rows: int) -> Dict[str, Any]:
    chunk = read_lines(job.heartbeats, cursor)
    rows = rows_of(chunk, chunk.cursor.lines - len(chunk.lines))
    return {"rows": downsample(rows, max_rows), "cursor": str(chunk.cursor),
            "reset": chunk.reset or cursor.ino == 0, "more": chunk.more}


def _events(job: JobDir, cursor: Cursor) -> Dict[str, Any]:
    chunk = read_lines(job.events, cursor)
    rows = []
    for line in chunk.lines[-EVENT_ROWS:]:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and _number(doc.get("time")) is not None:
            row = {k: doc[k][:300] if isinstance(doc[k], str) else doc[k]
                   for k in EVENT_FIELDS if isinstance(doc.get(k), (str, int, float))}
            row["time"] = doc["time"]
            rows.append(row)
    return {"rows": rows, "cursor": str(chunk.cursor), "reset": chunk.reset or cursor.ino == 0,
            "more": chunk.more}


def history(job: JobDir, want: Dict[str, Any], max_rows: int) -> Dict[str, Any]:
    """want: a cursor per file to read ("" from the start; a file left out is not read)."""
    if not job.path.is_dir():
        return {"job_dir": str(job.path), "exists": False}
    max_rows = max(16, min(int(max_rows), KEEP_ROWS))
    out: Dict[str, Any] = {"job_dir": str(job.path), "exists": True}
    if "progress" in want:
        out["progress"] = _progress(job, Cursor.parse(want["progress"]) if want["progress"] else None, max_rows)
    if "heartbeats" in want:
        out["heartbeats"] = _heartbeats(job, Cursor.parse(want["heartbeats"]), max_rows)
    if "events" in want:
        out["events"] = _events(job, Cursor.parse(want["events"]))
    return out


def recent_progress(job: JobDir, max_rows: int) -> List[Dict[str, Any]]:
    """The whole progress thinned to max_rows, as `tether status` draws it."""
    return _progress(job, None, max_rows)["rows"]


def main_history(request: Any) -> List[Dict[str, Any]]:
    """`python -m agent history`: request on stdin, {"max_rows": N, "jobs": [{"job_dir": ...,
    "progress": cursor, "heartbeats": cursor, "events": cursor}]}; one answer per job."""
    if not isinstance(request, dict) or not isinstance(request.get("jobs"), list):
        raise ValueError("history wants {'max_rows': N, 'jobs': [...]} on stdin")
    answers = []
    for item in request["jobs"]:
        if not isinstance(item, dict) or not isinstance(item.get("job_dir"), str):
            raise ValueError("each job is {'job_dir': ..., <file>: cursor}")
        want = {k: str(v) for k, v in item.items() if k in ("progress", "heartbeats", "events") and v is not None}
        answers.append(history(JobDir(str(item["job_dir"])), want, request.get("max_rows") or KEEP_ROWS))
    return answers
