"""A run at a glance: a text sparkline of its loss and the time left to max_steps."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

BARS = "▁▂▃▄▅▆▇█"
LOSS_NAMES = ("loss", "train_loss", "training_loss")


def loss_name(names: Sequence[str]) -> Optional[str]:
    """The metric people mean by "the loss": loss, else the first name with loss in it."""
    for n in LOSS_NAMES:
        if n in names:
            return n
    return next((n for n in sorted(names) if "loss" in n.lower()), None)


def sparkline(values: Sequence[float], width: int = 24) -> str:
    """values as one line of block characters, resampled to width (min and max kept per cell)."""
    if not values:
        return ""
    if len(values) > width:
        cells = [values[i * len(values) // width:(i + 1) * len(values) // width] for i in range(width)]
        values = [max(c) if i % 2 else min(c) for i, c in enumerate(cells) if c]
    lo, hi = min(values), max(values)
    span = hi - lo or 1.0
    return "".join(BARS[min(len(BARS) - 1, int((v - lo) / span * len(BARS)))] for v in values)


def metric_values(rows: List[Dict[str, Any]], name: str) -> List[float]:
    return [r["m"][name] for r in rows if name in r["m"]]


def steps_per_s(rows: List[Dict[str, Any]], window: int = 50) -> Optional[float]:
    """Recent speed, from the newest rows that have a step and a time."""
    timed = [(r["time"], r["step"]) for r in rows if r.get("time") is not None and r.get("step") is not None]
    recent = timed[-window:]
    if len(recent) < 2:
        return None
    (t0, s0), (t1, s1) = recent[0], recent[-1]
    return (s1 - s0) / (t1 - t0) if t1 > t0 and s1 > s0 else None


def eta_s(rows: List[Dict[str, Any]], step: Optional[int], max_steps: Any) -> Optional[float]:
    """Seconds to max_steps at the recent speed, when the workload reports max_steps."""
    if step is None or not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps <= step:
        return None
    rate = steps_per_s(rows)
    return (max_steps - step) / rate if rate else None


def duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
