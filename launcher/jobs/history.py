"""A job's metric history on the laptop: asked from the host with `agent history` (only what
is new since the last ask), checked where it enters (a host's answer is data, never trusted),
and kept thinned. Used by `tether status`'s sparkline, `tether plot` and the dashboard."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from agent.protocol import MAX_METRICS, downsample

from launcher.transport.agent_client import AgentClient
from launcher.errors import RemoteError
from launcher.registry import JobRecord

MAX_ROWS = 2000        # what a chart needs; the host never sends more per file and ask
EVENT_ROWS = 500
FILES = ("progress", "heartbeats", "events")
Row = Dict[str, Any]


def _num(v: Any) -> Optional[float]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return v if math.isfinite(v) else None


def checked_rows(doc: Any, limit: int) -> List[Row]:
    """History rows from a host: typed, capped, names cut to 64 characters."""
    out: List[Row] = []
    for r in doc[:limit] if isinstance(doc, list) else []:
        if not isinstance(r, dict) or not isinstance(r.get("n"), int) or not isinstance(r.get("m"), dict):
            continue
        m = {str(k)[:64]: v for k, v in list(r["m"].items())[:MAX_METRICS] if _num(v) is not None}
        step = r.get("step")
        out.append({"n": r["n"], "step": step if isinstance(step, int) and not isinstance(step, bool) else None,
                    "time": _num(r.get("time")), "m": m})
    return out


def checked_events(doc: Any) -> List[Row]:
    out: List[Row] = []
    for e in doc[-EVENT_ROWS:] if isinstance(doc, list) else []:
        if isinstance(e, dict) and _num(e.get("time")) is not None and isinstance(e.get("event"), str):
            out.append({str(k)[:32]: (v[:300] if isinstance(v, str) else v) for k, v in list(e.items())[:16]
                        if isinstance(v, str) or _num(v) is not None})
    return out


@dataclass
class Stream:
    """One file's rows as the laptop holds them, and where the next ask starts."""

    rows: List[Row] = field(default_factory=list)
    cursor: str = ""
    more: bool = False

    def apply(self, part: Any, max_rows: int, events: bool = False) -> None:
        if not isinstance(part, dict):
            raise RemoteError("the host's history answer was not understood")
        rows = checked_events(part.get("rows")) if events else checked_rows(part.get("rows"), 2 * MAX_ROWS)
        self.rows = rows if part.get("reset") is True else self.rows + rows
        if events:
            self.rows = self.rows[-EVENT_ROWS:]
        elif len(self.rows) > 2 * max_rows:
            self.rows = downsample(self.rows, max_rows)
        cursor = part.get("cursor")
        self.cursor = cursor[:64] if isinstance(cursor, str) else ""
        self.more = part.get("more") is True


@dataclass
class JobHistory:
    max_rows: int = MAX_ROWS
    progress: Stream = field(default_factory=Stream)
    heartbeats: Stream = field(default_factory=Stream)
    events: Stream = field(default_factory=Stream)
    exists: bool = True

    def request(self, files: Sequence[str]) -> Dict[str, str]:
        return {f: getattr(self, f).cursor for f in files}

    def apply(self, answer: Any) -> None:
        if not isinstance(answer, dict):
            raise RemoteError("the host's history answer was not understood")
        self.exists = answer.get("exists") is not False
        for f in FILES:
            if f in answer:
                getattr(self, f).apply(answer[f], self.max_rows, events=f == "events")

    @property
    def behind(self) -> bool:
        """The host has more than one ask brings: ask again soon."""
        return any(getattr(self, f).more for f in FILES)


def refresh(client: AgentClient, items: Iterable[Tuple[JobRecord, JobHistory]],
            files: Sequence[str] = ("progress",), max_rows: int = MAX_ROWS) -> None:
    """One `agent history` call for several jobs of one host; each history takes its new rows."""
    items = list(items)
    if not items:
        return
    request = {"max_rows": max_rows,
               "jobs": [{"job_dir": rec.job_dir, **hist.request(files)} for rec, hist in items]}
    answers = client.call("history", input=json.dumps(request).encode(), timeout=60)
    if not isinstance(answers, list) or len(answers) != len(items):
        raise RemoteError("the host's history answer was not one per job")
    for (_, hist), answer in zip(items, answers):
        hist.apply(answer)


def fetch(client: AgentClient, rec: JobRecord, files: Sequence[str] = FILES, max_rows: int = MAX_ROWS,
          rounds: int = 8) -> JobHistory:
    """A job's whole history (thinned), asking again while the host says there is more."""
    hist = JobHistory(max_rows=max_rows)
    for _ in range(rounds):
        refresh(client, [(rec, hist)], files, max_rows)
        if not hist.behind:
            break
    return hist
