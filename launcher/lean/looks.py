"""The commands that look at jobs: `status JOB`, `jobs`, `logs JOB`. Their bodies, without
typer: cli/run.py's commands call them, and so does the lean dispatch (dispatch.py) that runs
them before typer loads. Each returns its exit code. rich loads only where a table is drawn."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, List, Optional

from agent.protocol import JobState

from launcher.errors import ExitCode, TetherError, UsageError
from launcher.lean.session import Session
from launcher.lean.verbs import SPARK_ROWS

NO_JOBS = "no jobs yet: tether launch SPEC"
LOG_FILES = ("workload", "setup", "agent", "stacks")


def jobs(s: Session, as_json: bool = False) -> int:
    draw = None if as_json else _drawing(s)
    views = look(s, None, quiet=as_json)
    if draw is None:
        _echo(json.dumps([v.as_json() for v in views], indent=1))
    else:
        s.console.print(draw.jobs_table(views) if views else NO_JOBS)
    return 0


def status(s: Session, job: Optional[str] = None, as_json: bool = False) -> int:
    draw = None if as_json else _drawing(s)
    views = look(s, [job] if job else None, quiet=as_json, recent=0 if as_json or not job else SPARK_ROWS)
    if draw is None:
        out = views[0].as_json() if job else [v.as_json() for v in views]
        _echo(json.dumps(out, indent=1))
    elif job:
        draw.print_status(s.console, views[0], recent_rows(s, views[0]))
    else:
        s.console.print(draw.jobs_table(views) if views else NO_JOBS)
    if job and views[0].state == JobState.UNREACHABLE:
        return int(ExitCode.UNREACHABLE)
    return 0


def logs(s: Session, job: str, follow: bool = False, tail: int = 100, which: str = "workload",
         node: Optional[int] = None) -> int:
    if which not in LOG_FILES:
        raise UsageError(f"--file {which!r} is not a log", "use workload, setup, agent or stacks")
    handle = s.handle(job)
    if node is None:
        handle.logs(tail, follow, which, sys.stdout.buffer)
    elif not handle.record.nodes:
        raise UsageError(f"job {handle.record.id} runs on one host: --node is for a multi-node job",
                         f"tether logs {handle.record.id}")
    else:
        handle.logs(tail, follow, which, sys.stdout.buffer, node=node)
    return 0


def look(s: Session, names: Optional[list], quiet: bool = False, recent: int = 0) -> list:
    """The jobs named (all, without names) as they are now, then the reconcile step (whose
    actions are printed: to stderr when stdout is JSON). recent: their progress rows too."""
    from launcher.backends import observe
    from launcher.jobs.reconcile import reconcile

    records = [s.registry.resolve(j) for j in names] if names else s.registry.all()
    views = observe(records, s.places, s.registry, os.environ, recent)
    reconcile(views, s.ctx, _StderrConsole() if quiet else s.console)
    return views


def recent_rows(s: Session, view: Any) -> list:
    """The job's progress, thinned, for the sparkline and the ETA; none if it cannot be had."""
    if view.state in (JobState.UNREACHABLE, JobState.LOST):
        return []
    if view.recent is not None:  # came with the status
        return view.recent
    try:
        return s.handle(view.record.id).recent_progress(SPARK_ROWS)
    except TetherError:
        return []  # an older agent without `history`: the status is still worth printing




def _drawing(s: Session) -> Any:
    """launcher.show.tables and the console, loaded (rich with them) before the hosts are
    asked: while the status command is on its way (started by early.py), not after."""
    from launcher.show import tables

    s.console  # noqa: B018  (made now, not after the answer)
    return tables


def _echo(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


class _StderrConsole:
    """rich's Console on stderr, made when something is first printed (most reads print
    nothing there: `status --json` then never loads rich)."""

    def __init__(self) -> None:
        self._console: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True)
        return getattr(self._console, name)


__all__: List[str] = ["jobs", "status", "logs", "look", "recent_rows", "SPARK_ROWS"]
