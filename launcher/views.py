"""Rich tables and panels for people; the same data goes out as JSON for scripts."""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional

from rich.console import Console
from rich.table import Table

from agent.protocol import JobState

from .observe import JobView, host_label
from .sync import human_bytes

_COLOURS = {
    JobState.SUCCEEDED: "green", JobState.FAILED: "red", JobState.LOST: "red",
    JobState.UNREACHABLE: "yellow", JobState.STALLED: "yellow", JobState.STOPPED: "blue",
    JobState.RUNNING: "cyan",
}


def state_text(state: JobState) -> str:
    colour = _COLOURS.get(state)
    return f"[{colour}]{state.value}[/]" if colour else state.value


def ago(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f}s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def metrics_text(metrics: Dict[str, Any], limit: int = 4) -> str:
    parts = []
    for k, v in list(metrics.items())[:limit]:
        parts.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(parts)


def jobs_table(views: List[JobView]) -> Table:
    t = Table(box=None, header_style="bold")
    for col in ("ID", "NAME", "HOST", "STATE", "STEP", "HEARTBEAT", "CREATED"):
        t.add_column(col, no_wrap=True)
    now = time.time()
    for v in views:
        r = v.record
        t.add_row(r.id, r.name, host_label(r), state_text(v.state),
                  "-" if v.step is None else str(v.step), ago(v.heartbeat_age_s), ago(now - r.created))
    return t


def print_status(console: Console, v: JobView) -> None:
    r = v.record
    rows = [
        ("job", f"{r.id}  ({r.name})"),
        ("host", f"{host_label(r)}  {r.job_dir}"),
        ("state", state_text(v.state) + (f"  {v.reason}" if v.reason else "")),
    ]
    if v.failure:
        rows.append(("failure", f"{v.failure}" + (f" (exit code {v.exit_code})" if v.exit_code is not None else "")))
    if v.attempt or (v.stage and v.stage != "main"):
        rows.append(("attempt", f"{v.attempt}" + (f"  stage {v.stage}" if v.stage and v.stage != "main" else "")))
    rows.append(("heartbeat", ago(v.heartbeat_age_s)))
    if v.step is not None:
        rows.append(("step", f"{v.step}  {metrics_text(v.metrics, 8)}"))
    if v.resources:
        rows.append(("resources", resources_text(v.resources)))
    b = v.backup
    if b.get("last") or b.get("error") or b.get("in_progress"):
        text = f"{b['last']} (step {b.get('last_step')})" if b.get("last") else "none yet"
        if b.get("in_progress"):
            text += "  [one in progress]"
        if b.get("error"):
            text += f"  [red]last attempt failed: {b['error']}[/]"
        rows.append(("backup", text))
    if v.mirror:
        rows.append(("mirror", mirror_text(v.mirror)))
    if r.instance:
        inst = r.instance
        gone = " (destroyed)" if inst.get("destroyed_at") else ""
        cost = f"  spent ${v.spend_usd:.2f}" if v.spend_usd is not None else ""
        rows.append(("instance", f"{inst['provider']} {inst['id']}  ${r.price_per_hour or 0:.3f}/h{cost}{gone}"))
    if v.deadline_at and not v.state.is_terminal:
        rows.append(("deadline", f"in {max(0.0, v.deadline_at - time.time()) / 60:.0f} min"))
    for w in v.warnings:
        rows.append(("warning", f"[yellow]{w}[/]"))
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    for k, val in rows:
        t.add_row(k, val)
    console.print(t)


def mirror_text(m: Dict[str, Any]) -> str:
    """The hf:// mirror's line: what the Hub holds, what is on its way, and a failing push
    with its next try (never hidden)."""
    text = f"hf://{m.get('repo')}  "
    if m.get("last"):
        text += f"{m['last']} (step {m.get('last_step')}) pushed {ago(m.get('pushed_age_s'))}"
    else:
        text += "nothing pushed yet"
    if m.get("pushing"):
        text += f"  [pushing {m['pushing']}]"
    elif m.get("pending") and not m.get("error"):
        text += f"  [{m['pending']} waiting]"
    if m.get("error"):
        retry = f"; retrying in {m['retry_in_s']:.0f}s" if m.get("retry_in_s") is not None else ""
        text += f"  [red]push failed ({m.get('failures')}x): {m['error']}{retry}[/]"
    return text


def backups_table(items: List[Dict[str, Any]]) -> Table:
    t = Table(box=None, header_style="bold")
    for col in ("NAME", "STEP", "CREATED", "SIZE", "FILES", "VERIFIED"):
        t.add_column(col, no_wrap=True)
    now = time.time()
    for b in items:
        ok = "[green]yes[/]" if b.get("verified") else f"[red]no: {b.get('problem')}[/]"
        t.add_row(b["name"], "-" if b.get("step") is None else str(b["step"]), ago(now - b["created"]),
                  human_bytes(b["size"]), str(b["files"]), ok)
    return t


def resources_text(res: Dict[str, Any]) -> str:
    parts = []
    if "ram_used_gb" in res:
        parts.append(f"RAM {res['ram_used_gb']}/{res.get('ram_total_gb', '?')} GB")
    if "disk_free_gb" in res:
        parts.append(f"disk free {res['disk_free_gb']} GB")
    for g in res.get("gpus") or []:
        parts.append(f"GPU{g['index']} {g.get('util_percent')}% {g.get('mem_used_mb')}/{g.get('mem_total_mb')} MB")
    return " · ".join(parts)
