"""Commands that start jobs and watch them: launch, jobs, status, logs, watch, forget, demo. The
bodies of status, jobs and logs are lean/looks.py's, which the lean dispatch runs without typer."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Optional

import typer

from agent.protocol import JobState

from launcher.backends import observe
from launcher.cli.app import app, command, session
from launcher.errors import UsageError
from launcher.jobs.view import JobView
from launcher.lean import looks
from launcher.lean.looks import SPARK_ROWS
from launcher.text import inert


@app.command()
@command
def launch(
    spec: Path = typer.Argument(..., help="the job spec (YAML)"),
    host: Optional[str] = typer.Option(None, "--host", help="user@host[:port], an ~/.ssh/config alias, or 'local'"),
    follow: bool = typer.Option(False, "--follow", "-f", help="stream the log until the job ends"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print what would be sent; change nothing"),
) -> int:
    """Sync the workdir to the host and start the job there, detached."""
    from launcher.lean import launching

    return launching.launch(session(), str(spec), host, follow, dry_run)


@app.command()
@command
def jobs(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> int:
    """All jobs this laptop launched, with their state asked from their hosts."""
    return looks.jobs(session(), as_json)


@app.command()
@command
def status(
    job: Optional[str] = typer.Argument(None, help="id, id prefix or name; all jobs if left out"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
    live: bool = typer.Option(False, "--watch", "-w", help="redraw it every --every seconds until Ctrl-C"),
    every: float = typer.Option(1.5, "--every", help="seconds between redraws (--watch)"),
) -> Optional[int]:
    """State, heartbeat age, step and latest metrics of a job (read from its host)."""
    if live:
        _watch_live([job] if job else None, every)
        return None
    return looks.status(session(), job, as_json)


def _watch_live(jobs: Optional[list], every: float) -> None:
    """The status (or the table) redrawn in place on a terminal, each frame appended when the
    output is a file or a pipe. Each round is one status command per host over its shared
    connection. Ends with Ctrl-C, or when the one job watched has ended."""
    from rich.live import Live

    from launcher.show.tables import jobs_table, status_grid

    console = session().console
    screen = Live(console=console, auto_refresh=False) if console.is_terminal else None
    show = (lambda frame: screen.update(frame, refresh=True)) if screen else console.print
    with screen or contextlib.nullcontext(), _until_ctrl_c():
        while True:
            views = _look(jobs, recent=SPARK_ROWS if jobs else 0)
            if jobs:
                show(status_grid(views[0], _recent_rows(views[0])))
                if views[0].state.is_terminal:
                    return
            else:
                show(jobs_table(views) if views else "no jobs yet: tether launch SPEC")
            if not screen:
                console.print()
            time.sleep(every)


@contextlib.contextmanager
def _until_ctrl_c():
    """Ctrl-C ends a watch as its normal way out: no traceback, exit 0."""
    try:
        yield
    except KeyboardInterrupt:
        pass


def _look(jobs: Optional[list], quiet: bool = False, recent: int = 0) -> list:
    return looks.look(session(), jobs, quiet, recent)


def _recent_rows(view: JobView) -> list:
    return looks.recent_rows(session(), view)


@app.command()
@command
def logs(
    job: str = typer.Argument(..., help="id, id prefix or name"),
    follow: bool = typer.Option(False, "--follow", "-f", help="keep printing until the job ends"),
    tail: int = typer.Option(100, "--tail", "-n", help="lines of history to print first"),
    which: str = typer.Option("workload", "--file", help="workload, setup, agent, or stacks (of the last hang)"),
    node: Optional[int] = typer.Option(None, "--node", help="a multi-node job: only this node's log"),
) -> int:
    """The workload's output (stdout and stderr), from the host; a multi-node job's nodes merged,
    each line marked [node k]."""
    return looks.logs(session(), job, follow, tail, which, node)


@app.command()
@command
def watch(
    job: str = typer.Argument(..., help="id, id prefix or name"),
    every: float = typer.Option(10.0, "--every", help="seconds between looks"),
) -> None:
    """Show the job's status and mirror its backups (backup.mirror: laptop) until it ends."""
    from launcher.show.tables import metrics_text, state_text

    s = session()
    rec = s.registry.resolve(job)
    while True:
        view = _look([rec.id])[0]
        seen = f"step {view.step}  {metrics_text(view.metrics)}"
        if view.state in (JobState.UNREACHABLE, JobState.LOST):  # no step to show: say why
            seen = inert(view.reason or "")
        s.console.print(f"{time.strftime('%H:%M:%S')}  {state_text(view.state)}  {seen}")
        if view.state.is_terminal:
            return
        time.sleep(every)


@app.command()
@command
def forget(
    job: Optional[str] = typer.Argument(None, help="id, id prefix or name"),
    finished: bool = typer.Option(False, "--finished", help="every job that has ended"),
) -> None:
    """Drop ended jobs from this laptop's list (nothing on the host is touched)."""
    s = session()
    if (job is None) == (not finished):
        raise UsageError("give a job or --finished", "tether forget JOB, or tether forget --finished")
    records = [s.registry.resolve(job)] if job else s.registry.all()
    views = observe(records, s.places, s.registry, os.environ)
    gone = []
    for v in views:
        ended = v.state.is_terminal or v.state == JobState.LOST
        if v.record.instance_alive:
            if job:
                raise UsageError(f"job {v.record.id}'s rented instance may still run", f"tether down {v.record.id} first")
            continue
        if not ended:
            if job:
                raise UsageError(f"job {v.record.id} is {v.state.value}", f"tether stop {v.record.id} first")
            continue
        s.registry.remove(v.record.id)
        gone.append(v.record.id)
    s.console.print(f"forgot {len(gone)} job(s)" + (f": {' '.join(gone)}" if gone else ""))


@app.command()
@command
def demo(
    to: Path = typer.Option(Path("demo-result"), "--to", help="where the result is pulled"),
    root: Optional[str] = typer.Option(None, "--root", help="tether root on this machine (default ~/.tether)"),
    ui: bool = typer.Option(False, "--ui", help="a longer run, watched live in the dashboard (tether ui)"),
) -> None:
    """A real job end to end on this machine: launch, watch, pull."""
    from launcher.cli.demo import run_demo

    raise typer.Exit(run_demo(session(), to, root, ui))
