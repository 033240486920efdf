"""The `tether` command: status reads start their SSH commands first (early.py), then the CLI
loads and runs."""

import sys


def main() -> None:
    from launcher import early

    early.start(sys.argv[1:])
    from launcher.cli.app import main as cli

    cli()
