"""One job as a row of the jobs table (JSON): state, host, step and ETA, heartbeat age, last
loss with a sparkline, last backup's age, $/h and spend; a multi-node job's row per node
(rank, host, state, step, heartbeat). Host strings are passed on as
data; the page sets them with textContent."""

from __future__ import annotations

import calendar
import time
from typing import Any, Dict, List, Optional

from agent.protocol import BACKUP_NAME_RE

from launcher.show.curves import names
from launcher.registry import JobRecord
from launcher.backends import label_of
from launcher.jobs.view import JobView, node_json
from launcher.show.trend import eta_s, loss_name, metric_values, sparkline


def backup_age_s(name: Optional[str]) -> Optional[float]:
    """A backup's age from its name's UTC stamp (the name was checked on the host and here)."""
    m = BACKUP_NAME_RE.fullmatch(name or "")
    if not m:
        return None
    try:
        return max(0.0, time.time() - calendar.timegm(time.strptime(m.group(1), "%Y%m%dT%H%M%S")))
    except ValueError:
        return None


def _base(rec: JobRecord) -> Dict[str, Any]:
    return {"id": rec.id, "name": rec.name, "host": label_of(rec), "provider": rec.provider,
            "created": rec.created, "price_per_hour": rec.price_per_hour}


def pending_row(rec: JobRecord) -> Dict[str, Any]:
    """A job whose host has not answered yet: what the registry last knew."""
    return {**_base(rec), "state": rec.last_state, "reason": "asking its host...", "asking": True,
            "terminal": False, "step": None}


def job_row(v: JobView, rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    a = v.answer
    loss = loss_name(names(rows)) or loss_name(list(a.metrics))
    values = metric_values(rows, loss) if loss else []
    last = a.metrics.get(loss) if loss else None
    if not isinstance(last, (int, float)) or isinstance(last, bool):
        last = values[-1] if values else None
    max_steps = a.metrics.get("max_steps")
    return {
        **_base(v.record), "state": v.state.value, "reason": v.reason, "asking": False,
        "terminal": v.state.is_terminal, "failure": a.failure.value if a.failure else None,
        "step": a.step, "max_steps": max_steps if isinstance(max_steps, int) else None,
        "eta_s": None if v.state.is_terminal else eta_s(rows, a.step, max_steps),
        "heartbeat_age_s": a.heartbeat_age_s, "loss_name": loss, "loss": last,
        "spark": sparkline(values, 24), "backup": a.backup.last, "backup_age_s": backup_age_s(a.backup.last),
        "spend_usd": v.spend_usd, "attempt": a.attempt, "warnings": list(a.warnings),
        "nodes": [node_json(k, n) for k, n in enumerate(v.nodes)] if v.nodes else None,
    }
