"""`tether launch SPEC`: its body, without typer. A launch is what users wait for most after a
status read (edit, launch, look), and the Typer app (typer, click and every other command's
module) costs a tenth of a second to load before the spec is even read. cli/run.py's command
calls this too; lean/verbs.py reads the command line for it."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

from launcher.lean.session import Session


def launch(s: Session, spec: str, host: Optional[str] = None, follow: bool = False, dry_run: bool = False) -> int:
    """Sync the workdir to the host and start the job there, detached; with follow, its log
    until it ends, then its status, and the job's outcome as the exit code."""
    from launcher.backends import label_of
    from launcher.jobs.launch import launch as do_launch
    from launcher.spec import HostSpec, load_spec
    from launcher.text import inert
    from launcher import early
    from launcher.transport import prestarted

    try:
        override = _host_override(host)
        loaded = load_spec(Path(spec), os.environ, override)
        if override is not None:  # --host keeps the spec's other host settings (root, python...)
            merged = {**loaded.spec.host.model_dump(exclude_unset=True), **override.model_dump(exclude_unset=True)}
            raw_host = HostSpec.model_validate(merged)
            loaded = load_spec(Path(spec), os.environ, raw_host)
        done = do_launch(loaded, s.places, s.registry, s.console, dry_run=dry_run)
    finally:
        prestarted.discard()  # a session begun early (launcher/early.py) that this launch did not take
        early.keep_started()
    if done is None:
        return 0
    rec = done.record
    s.console.print(f"launched job [bold]{rec.id}[/] ({rec.name}) on {inert(label_of(rec))}")
    if not follow:
        s.console.print(f"  tether status {rec.id}    tether logs {rec.id} -f    tether pull {rec.id}")
        return 0
    s.handle(rec.id).logs(10_000, True, "workload", sys.stdout.buffer)
    from launcher.lean.looks import look
    from launcher.show.tables import print_status

    view = look(s, [rec.id])[0]
    print_status(s.console, view)
    return exit_for(view.state)


def exit_for(state) -> int:
    """A followed job's outcome as tether's exit code."""
    from agent.protocol import JobState

    from launcher.errors import ExitCode

    if state == JobState.SUCCEEDED:
        return int(ExitCode.OK)
    if state == JobState.UNREACHABLE:
        return int(ExitCode.UNREACHABLE)
    return int(ExitCode.FAILED)


def _host_override(address: Optional[str]):
    from launcher.errors import UsageError
    from launcher.spec import HostSpec

    if address is None:
        return None
    if not address.strip():
        raise UsageError("--host is empty", "give user@host[:port], an ~/.ssh/config alias, or local")
    if address == "local":
        return HostSpec(provider="local")
    return HostSpec(provider="ssh", address=address)
