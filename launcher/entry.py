"""The `tether` command. A status read starts its SSH command first (early.py); `status`,
`jobs` and `logs` in their usual forms then run without loading typer (lean/verbs.py reads
them, lean/looks.py runs them); every other command line goes to the Typer app
(launcher/cli), which owns help and errors."""

import sys


def main() -> None:
    from launcher import early

    args = sys.argv[1:]
    early.start(args)  # first: before even the lean path's parser loads
    from launcher.lean.verbs import parse

    parsed = parse(args)
    if parsed is not None:
        from launcher.lean.dispatch import run

        sys.exit(run(*parsed))
    from launcher.cli import main as cli

    cli()
