"""The `tether` app (typer): its root options and the session each command runs in; errors a
user can cause become one line and an exit code in lean/session.py, shared with the lean path
that runs `status`, `jobs` and `logs` before typer loads (lean/verbs.py). The commands live in
run.py, results.py, hosts.py and ui.py, which register themselves on `app`."""

from __future__ import annotations

import functools
from typing import Callable, Optional

import typer

from launcher import __version__
from launcher.lean.session import Session, run_guarded
from launcher.settings import places

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Run training jobs on GPU hosts and bring their results back.")

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
    _session = Session(places=places(), debug=debug)


def command(fn: Callable) -> Callable:
    """Turns TetherError into one line on stderr and its exit code (lean/session.py)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        code = run_guarded(session(), lambda: fn(*args, **kwargs))
        if code:
            raise typer.Exit(code)

    return wrapper


@app.command()
def version() -> None:
    """Print tether's version."""
    typer.echo(f"tether {__version__}")


def main() -> None:
    app()
