"""Commands that act on one job: pull, backups, stop, resume, ssh."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import List, Optional, Tuple

import typer

from launcher.backends import label_of
from launcher.cli.app import app, command, session
from launcher.errors import TetherError, UsageError
from launcher.lean.pulling import on_node
from launcher.text import inert


@app.command()
@command
def pull(
    job: str = typer.Argument(..., help="id, id prefix or name"),
    to: Optional[Path] = typer.Option(None, "--to", help="destination folder (default ./<name>-<id>)"),
    backup: Optional[str] = typer.Option(None, "--backup", help="a backup instead: 'latest' or its name"),
    path: Optional[List[str]] = typer.Option(None, "--path", help="a file or folder of the job folder to bring "
                                             "instead of the spec's artifacts (repeatable), e.g. code/model.pt"),
    node: Optional[int] = typer.Option(None, "--node", help="a multi-node job: this node's files "
                                       "(default node 0, where rank 0 writes the model)"),
    all_nodes: bool = typer.Option(False, "--all-nodes", help="a multi-node job: every node's, node K's into "
                                   "node-K/; with --backup the same step from each (its checkpoint shards)"),
) -> int:
    """Bring the job's outputs and listed artifacts (or one backup) here, verified by sha256."""
    from launcher.lean import pulling

    return pulling.pull(session(), job, str(to) if to is not None else None, list(path) if path else None,
                        backup, node, all_nodes)


@app.command()
@command
def stop(
    job: str = typer.Argument(..., help="id, id prefix or name"),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="wait until the job has stopped"),
    timeout: float = typer.Option(900, "--timeout", help="seconds to wait"),
) -> None:
    """SIGTERM to the workload, stop.grace_s to checkpoint and exit, then SIGKILL."""
    s = session()
    handle = s.handle(job)
    rec = handle.record
    asked = handle.stop("stopped by tether stop")
    s.console.print(asked.message, markup=False)
    if not wait or not asked.wait:
        return
    answer = handle.wait_stopped(timeout)
    state = answer.state
    from launcher.show.tables import state_text

    s.console.print(f"job {rec.id}: {state_text(state)}  {inert(answer.reason or '')}")
    if not state.is_terminal:
        raise TetherError(f"job {rec.id} did not stop within {timeout:.0f}s",
                          "run tether stop again, or tether status to watch it")


@app.command()
@command
def backups(
    job: str = typer.Argument(..., help="id, id prefix or name"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
    node: Optional[int] = typer.Option(None, "--node", help="a multi-node job: this node's backups (default 0)"),
) -> None:
    """The job's backups on its host: step, age, size, and whether they verify."""
    s = session()
    rec = s.registry.resolve(job)
    items = on_node(s.handle(job), node, False, "backups").backups()
    if as_json:
        typer.echo(json.dumps([asdict(b) for b in items], indent=1))
    elif not items:
        s.console.print(f"job {rec.id} has no backups yet" + (f" on node {node}" if node is not None else ""))
    else:
        from launcher.show.tables import backups_table

        s.console.print(backups_table(items))


@app.command()
@command
def resume(
    job: str = typer.Argument(..., help="id, id prefix or name"),
    on: Optional[str] = typer.Option(None, "--on", help="continue on another host: user@host[:port], an "
                                     "ssh alias, local, or vast/novita to rent one; a job on N nodes: "
                                     "N ssh addresses, comma-separated (needs backup.mirror: hf://... or laptop)"),
    force: bool = typer.Option(False, "--force", help="with --on: move without asking the old host whether the "
                               "job still runs there (when it cannot be asked and you know it is gone)"),
) -> None:
    """Start a stopped, failed or LOST job again, from its newest verified backup: on its host,
    or with --on on a new one when the old host is gone."""
    s = session()
    rec = s.registry.resolve(job)
    if on is not None:
        from launcher.jobs.resume import resume_on
        done = resume_on(rec, on, s.places, s.registry, s.console, os.environ, force=force)
        s.console.print(f"resumed job [bold]{rec.id}[/] on {inert(label_of(done.record))} from its mirrored backup")
        s.console.print(f"  tether status {rec.id}    tether logs {rec.id} -f")
        return
    if force:
        raise UsageError("--force is for resume --on (moving the job to another host)", f"tether resume {rec.id}")
    previous = s.handle(job).resume()
    s.console.print(f"resumed job [bold]{rec.id}[/] (was {previous}); it continues from its newest verified backup")
    s.console.print(f"  tether status {rec.id}    tether logs {rec.id} -f")


@app.command(context_settings={"allow_interspersed_args": False})
@command
def ssh(
    job: str = typer.Argument(..., help="id, id prefix or name"),
    cmd: Optional[List[str]] = typer.Argument(None, help="a command to run instead of a shell"),
    node: Optional[int] = typer.Option(None, "--node", help="a multi-node job: node K's host (else node 0's)"),
) -> None:
    """A shell (or one command) on the job's host, in its job folder; host key checked."""
    asked, cmd = node_before_command(list(cmd or []))  # JOB --node K: after JOB, the words are the command's
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    handle = on_node(session().handle(job), node if asked is None else asked, False, "ssh")
    argv = handle.shell_argv(cmd or None)  # OpenSSH connects, checking the host key
    raise typer.Exit(subprocess.call(argv))


def node_before_command(words: List[str]) -> Tuple[Optional[int], List[str]]:
    """`--node K` (or --node=K) leading the words after JOB: the node, and the command after it."""
    if not words or not (words[0] == "--node" or words[0].startswith("--node=")):
        return None, words
    if "=" in words[0]:
        value, rest = words[0][len("--node="):], words[1:]
    elif len(words) > 1:
        value, rest = words[1], words[2:]
    else:
        raise UsageError("--node needs a node number", "e.g. --node 1")
    try:
        return int(value), rest
    except ValueError:
        raise UsageError(f"--node {value[:20]!r} is not a node number", "e.g. --node 1") from None
