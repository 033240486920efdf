"""The `tether` command. A status read starts its SSH command first (early.py); a command of
cli/run.py (status, jobs, logs, ...) loads only that module of commands, the others all of them
(`tether --help` lists every command)."""

import importlib
import sys

RUN_VERBS = ("launch", "jobs", "status", "logs", "watch", "forget", "demo")


def main() -> None:
    from launcher import early

    args = sys.argv[1:]
    early.start(args)
    # Importing a commands module registers its commands on the app.
    importlib.import_module("launcher.cli.run" if args and args[0] in RUN_VERBS else "launcher.cli")
    from launcher.cli.app import main as cli

    cli()
