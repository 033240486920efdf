"""The `tether` command. A status read, a launch and a pull start their SSH commands first
(early.py); `status`, `jobs`, `logs`, `launch` and `pull` in their usual forms then run
without loading typer (lean/verbs.py reads them, lean/dispatch.py runs them); every other
command line goes to the Typer app (launcher/cli), which owns help and errors."""

import sys

# The verbs whose process ends the quick way (exit_quickly): those users run many times an hour.
# (A no-change launch spent 140 ms after its last line in Python's teardown and sqlite's close.)
QUICK_EXIT = ("status", "jobs", "logs", "launch", "pull")


def main() -> None:
    from launcher import early

    args = sys.argv[1:]
    early.start(args)  # first: before even the lean path's parser loads
    from launcher.lean.verbs import parse

    parsed = parse(args)
    if parsed is not None:
        from launcher.lean.dispatch import run

        code = run(*parsed)
        early.start_keepers(code)  # for the next status read, now this one has printed
        if parsed[0] in QUICK_EXIT:
            exit_quickly(code)
        sys.exit(code)
    from launcher.cli import main as cli

    cli()


def exit_quickly(code: int) -> None:
    """What Python's own exit does that matters here (wait for the threads that are not
    daemons, run the atexit functions, flush stdout and stderr), then os._exit: without
    tearing down the modules a read loaded (rich, the registry's sqlite), which took a
    status read 20-30 ms after its answer was printed. Every file the lean path writes is
    closed by then (the registry by its session, caches by `with` or their threads; the
    registry's commits are in its WAL, which the next open reads)."""
    import atexit
    import os
    import threading

    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # `tether jobs | head`: as dispatch.run says it, quietly with 1
        code = code or 1
    os._exit(code)
