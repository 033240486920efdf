"""The `tether` command. Errors a user can cause print one line and exit with an ExitCode;
`--debug` adds the traceback."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, List, Optional

import typer
from rich.console import Console

from agent.protocol import JobState

from launcher import __version__
from launcher.jobs.actions import ask_stop, pull_results, resume_here, wait_stopped
from launcher.errors import ExitCode, TetherError, UnreachableError, UsageError
from launcher.transport.targets import agent_for
from launcher.registry import JobRecord, Registry
from launcher.jobs.launch import launch as do_launch
from launcher.jobs.lifecycle import settle
from launcher.jobs.observe import JobView, host_label, observe
from launcher.transfer.pull import list_backups
from launcher.settings import Places, places
from launcher.spec import HostSpec, load_spec
from launcher.text import inert, plain
from launcher.show.tables import backups_table, jobs_table, metrics_text, print_status, state_text

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Run training jobs on GPU hosts and bring their results back.")


@dataclass
class Session:
    places: Places
    console: Console
    debug: bool
    _registry: Optional[Registry] = None

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry(self.places.registry)
        return self._registry

    def agent(self, rec: JobRecord):
        return agent_for(rec, self.places)


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 160, highlight=False)


_session: Optional[Session] = None


def session() -> Session:
    assert _session is not None
    return _session


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"tether {__version__}")
        raise typer.Exit()


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="show tracebacks for errors"),
          version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="print tether's version and exit")) -> None:
    global _session
    _session = Session(places=places(), console=_console(), debug=debug)


def command(fn: Callable) -> Callable:
    """Turns TetherError into one line on stderr and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TetherError as exc:
            if session().debug:
                traceback.print_exc()
            typer.echo(f"error: {plain(exc.line(), limit=4000)}", err=True)  # host words may be in it
            raise typer.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        finally:
            if _session is not None and _session._registry is not None:
                _session._registry.close()
                _session._registry = None

    return wrapper


def _host_override(address: Optional[str]) -> Optional[HostSpec]:
    if address is None:
        return None
    if address == "local":
        return HostSpec(provider="local")
    return HostSpec(provider="ssh", address=address)


@app.command()
@command
def launch(
    spec: Path = typer.Argument(..., help="the job spec (YAML)"),
    host: Optional[str] = typer.Option(None, "--host", help="user@host[:port], an ~/.ssh/config alias, or 'local'"),
    follow: bool = typer.Option(False, "--follow", "-f", help="stream the log until the job ends"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print what would be sent; change nothing"),
) -> None:
    """Sync the workdir to the host and start the job there, detached."""
    s = session()
    override = _host_override(host)
    loaded = load_spec(spec, os.environ, override)
    if override is not None:  # --host keeps the spec's other host settings (root, python...)
        merged = {**loaded.spec.host.model_dump(exclude_unset=True), **override.model_dump(exclude_unset=True)}
        raw_host = HostSpec.model_validate(merged)
        loaded = load_spec(spec, os.environ, raw_host)
    done = do_launch(loaded, s.places, s.registry, s.console, dry_run=dry_run)
    if done is None:
        return
    rec = done.record
    s.console.print(f"launched job [bold]{rec.id}[/] ({rec.name}) on {host_label(rec)}")
    if not follow:
        s.console.print(f"  tether status {rec.id}    tether logs {rec.id} -f    tether pull {rec.id}")
        return
    _stream_logs(rec, tail=10_000, follow=True, which="workload")
    view = observe([rec], s.places, s.registry)[0]
    print_status(s.console, view)
    raise typer.Exit(_exit_for(view))


def _exit_for(view: JobView) -> int:
    if view.state == JobState.SUCCEEDED:
        return ExitCode.OK
    if view.state == JobState.UNREACHABLE:
        return ExitCode.UNREACHABLE
    return ExitCode.FAILED


@app.command()
@command
def jobs(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """All jobs this laptop launched, with their state asked from their hosts."""
    s = session()
    views = observe(s.registry.all(), s.places, s.registry)
    settle(views, s.places, s.registry, s.console if not as_json else Console(stderr=True), os.environ)
    if as_json:
        typer.echo(json.dumps([v.as_json() for v in views], indent=1))
    elif not views:
        s.console.print("no jobs yet: tether launch SPEC")
    else:
        s.console.print(jobs_table(views))


@app.command()
@command
def status(
    job: Optional[str] = typer.Argument(None, help="id, id prefix or name; all jobs if left out"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """State, heartbeat age, step and latest metrics of a job (read from its host)."""
    s = session()
    records = [s.registry.resolve(job)] if job else s.registry.all()
    views = observe(records, s.places, s.registry)
    settle(views, s.places, s.registry, s.console if not as_json else Console(stderr=True), os.environ)
    if as_json:
        out = views[0].as_json() if job else [v.as_json() for v in views]
        typer.echo(json.dumps(out, indent=1))
    elif job:
        print_status(s.console, views[0], _recent_rows(views[0]))
    else:
        s.console.print(jobs_table(views) if views else "no jobs yet: tether launch SPEC")
    if job and views[0].state == JobState.UNREACHABLE:
        raise typer.Exit(int(ExitCode.UNREACHABLE))


def _recent_rows(view: JobView) -> list:
    """The job's progress, thinned, for the sparkline and the ETA; none if it cannot be had."""
    from launcher.jobs.history import fetch

    rec = view.record
    if view.state in (JobState.UNREACHABLE, JobState.LOST) or rec.in_kernel or rec.in_notebook:
        return []
    try:
        with session().agent(rec) as client:
            return fetch(client, rec, ("progress",), max_rows=64, rounds=1).progress.rows
    except TetherError:
        return []  # an older agent without `history`: the status is still worth printing


@app.command()
@command
def logs(
    job: str = typer.Argument(..., help="id, id prefix or name"),
    follow: bool = typer.Option(False, "--follow", "-f", help="keep printing until the job ends"),
    tail: int = typer.Option(100, "--tail", "-n", help="lines of history to print first"),
    which: str = typer.Option("workload", "--file", help="workload, setup, agent, or stacks (of the last hang)"),
) -> None:
    """The workload's output (stdout and stderr), from the host."""
    if which not in ("workload", "setup", "agent", "stacks"):
        raise UsageError(f"--file {which!r} is not a log", "use workload, setup, agent or stacks")
    rec = session().registry.resolve(job)
    if rec.in_kernel:
        from launcher.backends.kaggle import kernel_log
        lines = kernel_log(rec, os.environ).splitlines()
        typer.echo("\n".join(lines[-tail:]) if tail else "")
        return
    _stream_logs(rec, tail, follow, which)


def _stream_logs(rec: JobRecord, tail: int, follow: bool, which: str) -> None:
    """The host's log, each chunk written (and flushed) the moment it arrives, piped or not."""
    args = [rec.job_dir, "--tail", str(tail), "--file", which] + (["--follow"] if follow else [])
    with session().agent(rec) as client:
        stream = client.stream("logs", *args)
        stream.close_stdin()
        out = sys.stdout.buffer
        try:
            while True:
                chunk = stream.read_some()
                if not chunk:
                    break
                out.write(chunk)
                out.flush()
        except BaseException:
            stream.kill()  # Ctrl-C: end the remote follower too
            raise
        rc = stream.wait()
    if rc != 0:  # the host did not finish the stream: never taken for the job's end
        detail = stream.stderr_text().strip().splitlines()
        raise UnreachableError(f"the log stream from {host_label(rec)} ended early"
                               + (f" ({detail[-1][:200]})" if detail else " (the connection dropped)"),
                               f"the job is not affected: tether logs {rec.id}" + (" -f" if follow else ""))


@app.command()
@command
def pull(
    job: str = typer.Argument(..., help="id, id prefix or name"),
    to: Optional[Path] = typer.Option(None, "--to", help="destination folder (default ./<name>-<id>)"),
    backup: Optional[str] = typer.Option(None, "--backup", help="a backup instead: 'latest' or its name"),
    path: Optional[List[str]] = typer.Option(None, "--path", help="a file or folder of the job folder to bring "
                                             "instead of the spec's artifacts (repeatable), e.g. code/model.pt"),
) -> None:
    """Bring the job's outputs and listed artifacts (or one backup) here, verified by sha256."""
    s = session()
    rec = s.registry.resolve(job)
    dest = to or Path(f"{rec.name}-{rec.id}")
    asked = list(path or rec.artifacts or ["outputs/"])
    result = pull_results(rec, s.places, dest, s.console, backup, asked)
    if not result.pulled and not result.unchanged and not result.refused and backup is None and not rec.in_kernel:
        with s.agent(rec) as client:
            _say_what_is_there(s.console, rec, asked, client.call("inventory", rec.job_dir))
        return
    s.console.print(f"pulled {len(result.pulled)} file(s) into {dest}"
                    + (f", {len(result.unchanged)} already there" if result.unchanged else ""))
    for path in result.pulled:
        s.console.print(f"  {path}", markup=False)
    for item in result.refused:
        s.console.print(f"  not pulled: {item}", markup=False)


def _say_what_is_there(console: Console, rec: JobRecord, asked: List[str], held: object) -> None:
    """A pull that found nothing: what the job folder does hold, and how to bring it."""
    from launcher.transfer.sync import human_bytes

    console.print(f"pulled 0 files: nothing in {', '.join(asked)} on the host", markup=False)
    if not isinstance(held, dict):
        return
    found = []
    for name, info in (held.get("folders") or {}).items():
        if isinstance(info, dict) and isinstance(info.get("files"), int) and info["files"] > 0:
            found.append((name, f"{info['files']} file(s), {human_bytes(info.get('bytes') or 0)}"))
    for f in held.get("written_in_code") or []:
        if isinstance(f, dict) and isinstance(f.get("path"), str):
            found.append((f["path"], f"{human_bytes(f.get('bytes') or 0)}, written by the script in its folder"))
    if not found:
        console.print("the job folder holds no outputs, checkpoints or files the script wrote", markup=False)
        return
    console.print("the job folder holds:", markup=False)
    for name, what in found:
        console.print(f"  {plain(name, 300)}  ({what})", markup=False)
    wanted = [plain(n, 300) for n, _ in found if not n.startswith("backups/")]
    if wanted:
        console.print(f"to bring them: tether pull {rec.id} " + " ".join(f"--path {n}" for n in wanted), markup=False)
        console.print(f"and for next time, in the spec: artifacts: [{', '.join(wanted)}]", markup=False)
    if any(n == "backups/" for n, _ in found):
        console.print(f"or the newest backup: tether pull {rec.id} --backup latest", markup=False)


@app.command()
@command
def stop(
    job: str = typer.Argument(..., help="id, id prefix or name"),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="wait until the job has stopped"),
    timeout: float = typer.Option(900, "--timeout", help="seconds to wait"),
) -> None:
    """SIGTERM to the workload, stop.grace_s to checkpoint and exit, then SIGKILL."""
    s = session()
    rec = s.registry.resolve(job)
    asked = ask_stop(rec, s.places)
    s.console.print(asked.message, markup=False)
    if not wait or not asked.agent_alive:
        return
    answer = wait_stopped(rec, s.places, s.registry, timeout)
    state = answer.state
    s.console.print(f"job {rec.id}: {state_text(state)}  {inert(answer.reason or '')}")
    if not state.is_terminal:
        raise TetherError(f"job {rec.id} did not stop within {timeout:.0f}s",
                          "run tether stop again, or tether status to watch it")


@app.command()
@command
def backups(
    job: str = typer.Argument(..., help="id, id prefix or name"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """The job's backups on its host: step, age, size, and whether they verify."""
    s = session()
    rec = s.registry.resolve(job)
    with s.agent(rec) as client:
        items = list_backups(client, rec.job_dir)
    if as_json:
        typer.echo(json.dumps([asdict(b) for b in items], indent=1))
    elif not items:
        s.console.print(f"job {rec.id} has no backups yet")
    else:
        s.console.print(backups_table(items))


@app.command()
@command
def resume(
    job: str = typer.Argument(..., help="id, id prefix or name"),
    on: Optional[str] = typer.Option(None, "--on", help="continue on another host: user@host[:port], an "
                                     "ssh alias, local, or vast/novita to rent one "
                                     "(needs backup.mirror: hf://... or laptop)"),
) -> None:
    """Start a stopped, failed or LOST job again, from its newest verified backup: on its host,
    or with --on on a new one when the old host is gone."""
    s = session()
    rec = s.registry.resolve(job)
    if on is not None:
        from launcher.jobs.resume import resume_on
        done = resume_on(rec, on, s.places, s.registry, s.console, os.environ)
        s.console.print(f"resumed job [bold]{rec.id}[/] on {host_label(done.record)} from its mirrored backup")
        s.console.print(f"  tether status {rec.id}    tether logs {rec.id} -f")
        return
    previous = resume_here(rec, s.places, s.registry, os.environ)
    s.console.print(f"resumed job [bold]{rec.id}[/] (was {previous}); it continues from its newest verified backup")
    s.console.print(f"  tether status {rec.id}    tether logs {rec.id} -f")


@app.command()
@command
def watch(
    job: str = typer.Argument(..., help="id, id prefix or name"),
    every: float = typer.Option(10.0, "--every", help="seconds between looks"),
) -> None:
    """Show the job's status and mirror its backups (backup.mirror: laptop) until it ends."""
    s = session()
    rec = s.registry.resolve(job)
    while True:
        view = observe([s.registry.resolve(rec.id)], s.places, s.registry)[0]
        settle([view], s.places, s.registry, s.console, os.environ)
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
    views = observe(records, s.places, s.registry)
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


@app.command(context_settings={"allow_interspersed_args": False})
@command
def ssh(
    job: str = typer.Argument(..., help="id, id prefix or name"),
    cmd: Optional[List[str]] = typer.Argument(None, help="a command to run instead of a shell"),
) -> None:
    """A shell (or one command) on the job's host, in its job folder; host key checked."""
    s = session()
    rec = s.registry.resolve(job)
    with s.agent(rec) as client:
        host = client.host  # only builds an OpenSSH command line; OpenSSH connects
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    argv = host.shell_argv(cmd or None, rec.job_dir)
    raise typer.Exit(subprocess.call(argv))


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


@app.command()
def version() -> None:
    """Print tether's version."""
    typer.echo(f"tether {__version__}")


def main() -> None:
    app()




if __name__ == "__main__":
    main()
