"""Metric history rows, thinned the same way on both sides.

A history row is {"n": line number, "step": int or None, "time": float or None, "m": {name:
number}}: one progress line (or one heartbeat sample) with its numeric metrics. The host
thins what it sends and the laptop what it keeps, with this one function."""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

HISTORY_KEYS = ("step", "time", "checkpoint", "max_steps")  # in a progress line, not metrics to plot
MAX_METRICS = 32      # numeric metrics kept per row


def downsample(rows: List[Dict[str, Any]], max_rows: int) -> List[Dict[str, Any]]:
    """At most max_rows of rows, in order: the line range is cut into equal buckets and each
    keeps its first and last row and, for every metric, the rows holding its minimum and
    maximum. A spike survives any amount of thinning (and thinning again)."""
    if len(rows) <= max_rows:
        return list(rows)
    names = set(sorted({k for r in rows for k in r["m"]})[:MAX_METRICS])
    per_bucket = 2 + 2 * len(names)
    buckets = max(1, max_rows // per_bucket)
    lo, hi = rows[0]["n"], rows[-1]["n"]
    width = max(1.0, (hi - lo + 1) / buckets)
    keep: set = set()
    current, first, last = None, 0, 0
    low: Dict[str, Tuple[float, int]] = {}
    high: Dict[str, Tuple[float, int]] = {}
    for i, r in enumerate(rows):
        b = int((r["n"] - lo) / width)
        if b != current:
            if current is not None:
                keep.update((first, last), *(v[1:] for v in low.values()), *(v[1:] for v in high.values()))
            current, first, low, high = b, i, {}, {}
        last = i
        for k, v in r["m"].items():
            if k not in names:
                continue
            if k not in low or v < low[k][0]:
                low[k] = (v, i)
            if k not in high or v > high[k][0]:
                high[k] = (v, i)
    keep.update((first, last), *(v[1:] for v in low.values()), *(v[1:] for v in high.values()))
    return [rows[i] for i in sorted(keep)]
