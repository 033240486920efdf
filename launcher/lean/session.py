"""The session a command runs in, and the one place where errors a user can cause become one
line on stderr and an exit code (`--debug` adds the traceback). Used by the Typer app
(cli/app.py) and by the lean dispatch (verbs.py) alike; imports neither typer nor rich."""

from __future__ import annotations

import os
import sys
import traceback
from typing import TYPE_CHECKING, Callable, Optional

from launcher.errors import ExitCode, TetherError
from launcher.registry import Registry
from launcher.settings import Places
from launcher.text import plain

if TYPE_CHECKING:
    from rich.console import Console

    from launcher.backends import Context, JobHandle


class Session:
    """Where tether keeps its files, the registry (opened when first asked for) and the
    console (made when first printed to: rich loads only for output that needs it)."""

    def __init__(self, places: Places, debug: bool = False, console: Optional["Console"] = None) -> None:
        self.places = places
        self.debug = debug
        self._console = console
        self._registry: Optional[Registry] = None

    @property
    def console(self) -> "Console":
        if self._console is None:
            self._console = make_console()
        return self._console

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry(self.places.registry)
        return self._registry

    @property
    def ctx(self) -> "Context":
        from launcher.backends import Context

        return Context(self.places, self.registry, os.environ)

    def handle(self, job: str) -> "JobHandle":
        """The job named by an id, an id prefix or a name, as its kind's handle."""
        from launcher.backends import handle_for

        return handle_for(self.registry.resolve(job), self.ctx)

    def close(self) -> None:
        if self._registry is not None:
            self._registry.close()
            self._registry = None


def make_console() -> "Console":
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160, highlight=False)


def error_line(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def run_guarded(session: Session, fn: Callable[[], Optional[int]]) -> int:
    """fn's exit code (None: 0); a TetherError becomes its one line and its code, Ctrl-C
    `interrupted` and 130; the registry is closed either way. Anything else is a bug and
    goes up with its traceback."""
    try:
        return int(fn() or 0)
    except TetherError as exc:
        if session.debug:
            traceback.print_exc()
        error_line(f"error: {plain(exc.line(), limit=4000)}")  # host words may be in it
        return int(exc.exit_code)
    except KeyboardInterrupt:
        error_line("interrupted")
        return int(ExitCode.INTERRUPTED)
    finally:
        session.close()
