"""A command line lean/verbs.py read, run without typer: its body (looks.py's, launching.py's
for launch, pulling.py's for pull) in a session of its own, errors as one line (session.py)."""

from __future__ import annotations

import os
import sys
from typing import Any, Dict

from launcher.lean import launching, looks, pulling
from launcher.lean.session import Session, run_guarded

VERB_BODIES = {"jobs": looks.jobs, "status": looks.status, "logs": looks.logs, "launch": launching.launch,
               "pull": pulling.pull}


def run(verb: str, kwargs: Dict[str, Any]) -> int:
    """Its exit code."""
    from launcher.settings import places

    session = Session(places())
    try:
        return run_guarded(session, lambda: VERB_BODIES[verb](session, **kwargs))
    except BrokenPipeError:  # `tether logs JOB | head`: as the Typer app (click) ends, quietly with 1
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        return 1
