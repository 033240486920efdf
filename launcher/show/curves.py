"""History rows as curves to draw: one per metric, against step and against wall time, and
the run's moments (restarts, stalls, backups, deadline, end) as markers on them."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

Row = Dict[str, Any]
Pair = Tuple[List[float], List[float]]


@dataclass(frozen=True)
class Marker:
    kind: str           # restart | stall | backup | deadline | end
    label: str
    time: float
    step: Optional[int]


def by_step(rows: List[Row], name: str) -> Pair:
    """(steps, values), one value per step: after a restart the re-run's value wins."""
    seen: Dict[int, float] = {}
    for r in rows:
        if r["step"] is not None and name in r["m"]:
            seen[r["step"]] = r["m"][name]
    steps = sorted(seen)
    return [float(s) for s in steps], [seen[s] for s in steps]


def by_time(rows: List[Row], name: str) -> Pair:
    points = sorted((r["time"], r["m"][name]) for r in rows if r["time"] is not None and name in r["m"])
    return [p[0] for p in points], [p[1] for p in points]


def names(rows: List[Row]) -> List[str]:
    """Metric names in the order they first appear, the losses first."""
    out: Dict[str, None] = {}
    for r in rows:
        for k in r["m"]:
            out.setdefault(k, None)
    return sorted(out, key=lambda k: "loss" not in k.lower())  # stable: first-seen order otherwise


def curves(rows: List[Row], with_steps: bool = True) -> Dict[str, Dict[str, Pair]]:
    return {n: ({"step": by_step(rows, n)} if with_steps else {}) | {"time": by_time(rows, n)}
            for n in names(rows)}


def _marker(e: Row) -> Optional[Tuple[str, str]]:
    kind = e.get("event")
    if kind == "child-started" and isinstance(e.get("attempt"), int) and e["attempt"] > 0:
        return "restart", f"restart {e['attempt']}"
    if kind == "stalled":
        return "stall", "stalled"
    if kind == "backup-done":
        return "backup", f"backup {e.get('name', '')}"
    if kind == "state" and e.get("failure") == "deadline":
        return "deadline", "deadline"
    if kind == "state" and e.get("state") in ("SUCCEEDED", "FAILED", "STOPPED"):
        return "end", str(e["state"])
    return None


def markers(events: List[Row], rows: List[Row]) -> List[Marker]:
    """Each marker at its event's step, else at the step reached by its time."""
    timed = sorted((r["time"], r["step"]) for r in rows if r["time"] is not None and r["step"] is not None)
    times = [t for t, _ in timed]
    out = []
    for e in events:
        found = _marker(e)
        if found is None:
            continue
        step = e.get("step") if isinstance(e.get("step"), int) else None
        if step is None and timed:
            i = bisect.bisect_right(times, e["time"]) - 1
            step = timed[max(i, 0)][1]
        out.append(Marker(found[0], found[1], float(e["time"]), step))
    return out
