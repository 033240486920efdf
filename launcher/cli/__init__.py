"""The `tether` command. app.py holds the Typer app, the session and the one place errors
become a line and an exit code; each other module here registers its commands on it."""

from launcher.cli.app import app, main
from launcher.cli import hosts, results, run, ui  # noqa: F401,E402  (register their commands)

__all__ = ["app", "main"]
