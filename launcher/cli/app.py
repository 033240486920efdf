"""The `tether` app: the session a command runs in, and the one place where errors a user can
cause become one line and an exit code (`--debug` adds the traceback). The commands live in
run.py, results.py, hosts.py and ui.py, which register themselves on `app`."""

from __future__ import annotations

import functools
import os
import sys
import traceback
from dataclasses import dataclass
from typing import Callable, Optional

import typer
from rich.console import Console

from launcher import __version__
from launcher.backends import Context, JobHandle, handle_for
from launcher.errors import ExitCode, TetherError
from launcher.registry import Registry
from launcher.settings import Places, places
from launcher.text import plain

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

    @property
    def ctx(self) -> Context:
        return Context(self.places, self.registry, os.environ)

    def handle(self, job: str) -> JobHandle:
        """The job named by an id, an id prefix or a name, as its kind's handle."""
        return handle_for(self.registry.resolve(job), self.ctx)


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


@app.command()
def version() -> None:
    """Print tether's version."""
    typer.echo(f"tether {__version__}")


def main() -> None:
    app()
