"""Rich tables and panels for people; the same data goes out as JSON for scripts. Every
string that came from a host passes through text.inert before Rich renders it."""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Sequence

from rich.console import Console
from rich.table import Table

from agent.protocol import BackupInfo, BackupSummary, JobState, MirrorSummary, Resources

from launcher.show.curves import names
from launcher.show.diagnose import unsent_files
from launcher.jobs.view import JobView
from launcher.text import human_bytes, inert
from launcher.show.trend import duration, eta_s, loss_name, metric_values, sparkline

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
    """key=value pairs, inert (a workload names and fills its metrics)."""
    parts = []
    for k, v in list(metrics.items())[:limit]:
        value = f"{v:.4g}" if isinstance(v, float) else str(v)
        parts.append(f"{inert(k, 64)}={inert(value, 200)}")
    return " ".join(parts)


def jobs_table(views: List[JobView]) -> Table:
    t = Table(box=None, header_style="bold")
    for col in ("ID", "NAME", "HOST", "STATE", "STEP", "HEARTBEAT", "CREATED"):
        t.add_column(col, no_wrap=True)
    now = time.time()
    for v in views:
        r = v.record
        t.add_row(r.id, r.name, inert(v.host), state_text(v.state),
                  "-" if v.step is None else str(v.step), ago(v.heartbeat_age_s), ago(now - r.created))
    return t


def print_status(console: Console, v: JobView, history: Sequence[Dict[str, Any]] = ()) -> None:
    """history: recent progress rows (launcher.history), for the loss sparkline and the ETA."""
    console.print(status_grid(v, history))


def status_grid(v: JobView, history: Sequence[Dict[str, Any]] = ()) -> Table:
    """One job in detail, as a two-column grid (printed, or redrawn live by status --watch)."""
    r, a = v.record, v.answer
    rows = [
        ("job", f"{r.id}  ({r.name})"),
        ("host", f"{inert(v.host)}  {inert(r.job_dir)}"),
        ("state", state_text(v.state) + (f"  {inert(v.reason)}" if v.reason else "")),
    ]
    if a.failure:
        rows.append(("failure", f"{a.failure.value}" + (f" (exit code {a.exit_code})" if a.exit_code is not None else "")))
    if a.attempt or (a.stage and a.stage != "main"):
        rows.append(("attempt", f"{a.attempt}" + (f"  stage {inert(a.stage)}" if a.stage and a.stage != "main" else "")))
    rows.append(("heartbeat", ago(a.heartbeat_age_s)))
    if not v.state.is_terminal and v.state not in (JobState.LOST, JobState.UNREACHABLE):
        rows.append(("output", f"last output {ago(a.last_output_age_s)}, last progress {ago(a.last_progress_age_s)}"))
    if a.step is not None:
        rows.append(("step", f"{a.step}{progress_text(a)}  {metrics_text(a.metrics, 8)}"))
    rows += trend_rows(a.step, a.metrics, list(history), v.state.is_terminal or a.eta_s is not None)
    if a.resources != Resources():
        rows.append(("resources", resources_text(a.resources)))
    if a.backup.last or a.backup.error or a.backup.in_progress:
        rows.append(("backup", backup_text(a.backup)))
    if v.nodes:  # node K pushes its own backups, under node-K/ in the repo
        rows += [("mirror", mirror_text(n.answer.mirror, f"node-{k}/")) for k, n in enumerate(v.nodes)
                 if n.answer.mirror is not None]
    elif a.mirror is not None:
        rows.append(("mirror", mirror_text(a.mirror)))
    if a.resumed_unverified:
        rows.append(("resumed", "[yellow]from the live checkpoints/ folder: no backup verified[/]"))
    if r.instance:
        inst = r.instance
        gone = " (destroyed)" if inst.get("destroyed_at") else ""
        cost = f"  spent ${v.spend_usd:.2f}" if v.spend_usd is not None else ""
        rows.append(("instance", f"{inert(inst['provider'])} {inert(inst['id'])}  ${r.price_per_hour or 0:.3f}/h"
                                 f"{cost}{gone}"))
    if a.deadline_at and not v.state.is_terminal:
        rows.append(("deadline", f"in {max(0.0, a.deadline_at - time.time()) / 60:.0f} min"))
    for k, n in enumerate(v.nodes or []):
        step = f"  step {n.answer.step}" if n.answer.step is not None else ""
        rows.append((f"node {k}", f"{state_text(n.state)}  {inert(n.host)}{step}"
                                  + (f"  {inert(n.reason)}" if n.reason and n.state != v.state else "")))
    for w in a.warnings:
        rows.append(("warning", f"[yellow]{inert(w)}[/]"))
    for line in unsent_files(a.log_tail, r.workdir, r.job_dir):
        rows.append(("missing", f"[red]{inert(line)}[/]"))
    if a.log_tail:
        rows.append(("log", "\n".join(inert(line, 300) for line in a.log_tail)))
    if v.last_known:
        rows.append(("last seen", inert(v.last_known)))
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    for k, val in rows:
        t.add_row(k, val)
    return t


def progress_text(a) -> str:
    """`/5000, 3.1 it/s, ETA 21m` when the total and a rate are known."""
    parts = []
    if a.total_steps:
        parts.append(f"/{a.total_steps}")
    if a.steps_per_s:
        parts.append(f", {a.steps_per_s:.3g} it/s")
    if a.eta_s is not None:
        parts.append(f", ETA {duration(a.eta_s)}")
    return "".join(parts)


def backup_text(b: BackupSummary) -> str:
    text = f"{inert(b.last)} (step {b.last_step})" if b.last else "none yet"
    if b.in_progress:
        text += "  \\[one in progress]"
    if b.error:
        text += f"  [red]last attempt failed: {inert(b.error)}[/]"
    return text


def mirror_text(m: MirrorSummary, folder: str = "") -> str:
    """The hf:// mirror's line: what the Hub holds, what is on its way, and a failing push
    with its next try (never hidden). folder: a node's own in the repo (node-K/)."""
    text = f"hf://{inert(m.repo)}{'/' + folder if folder else ''}  "
    if m.last:
        text += f"{inert(m.last)} (step {m.last_step}) pushed {ago(m.pushed_age_s)}"
    else:
        text += "nothing pushed yet"
    if m.pushing:
        text += f"  \\[pushing {inert(m.pushing)}]"
    elif m.pending and not m.error:
        text += f"  \\[{inert(m.pending)} waiting]"
    if m.error:
        retry = f"; retrying in {m.retry_in_s:.0f}s" if m.retry_in_s is not None else ""
        text += f"  [red]push failed ({m.failures}x): {inert(m.error)}{retry}[/]"
    return text


def backups_table(items: Sequence[BackupInfo]) -> Table:
    t = Table(box=None, header_style="bold")
    for col in ("NAME", "STEP", "CREATED", "SIZE", "FILES", "VERIFIED"):
        t.add_column(col, no_wrap=True)
    now = time.time()
    for b in items:
        ok = "[green]yes[/]" if b.verified else f"[red]no: {inert(b.problem)}[/]"
        t.add_row(inert(b.name), "-" if b.step is None else str(b.step),
                  ago(now - b.created) if b.created is not None else "-",
                  human_bytes(b.size), str(b.files), ok)
    return t


def resources_text(res: Resources) -> str:
    parts = []
    if res.ram_used_gb is not None:
        parts.append(f"RAM {res.ram_used_gb}/{res.ram_total_gb if res.ram_total_gb is not None else '?'} GB")
    if res.disk_free_gb is not None:
        parts.append(f"disk free {res.disk_free_gb} GB")
    for g in res.gpus:
        parts.append(f"GPU{g.index} {g.util_percent}% {g.mem_used_mb}/{g.mem_total_mb} MB")
    return " · ".join(parts)


def trend_rows(step: Optional[int], metrics: Dict[str, Any], history: List[Dict[str, Any]],
               ended: bool) -> List[tuple]:
    """The loss as a sparkline with its last value, and the ETA to max_steps if reported."""
    out = []
    name = loss_name(names(history))
    values = metric_values(history, name) if name else []
    if len(values) >= 2:
        out.append((inert(name, 64), f"[cyan]{sparkline(values, 32)}[/]  {values[-1]:.4g}"))
    # The agent's own ETA (progress.total, a reported total) is on the step line; this one is
    # for a workload that reports max_steps as a metric, timed from the history.
    eta = None if ended else eta_s(history, step, metrics.get("max_steps"))
    if eta is not None:
        out.append(("eta", f"{duration(eta)} to step {metrics['max_steps']}"))
    return out
