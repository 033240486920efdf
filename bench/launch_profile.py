"""Where a `tether launch` spends its time: run as `python bench/launch_profile.py job.yaml`
(the tether environment set), it launches once with each phase timed and prints one JSON
object: Python start and imports, the local scan, each remote call, the total."""

from __future__ import annotations

import importlib
import json
import sys
import time

T0 = time.perf_counter()
phases: list = []


def _timed(name, fn):
    def wrapper(*args, **kwargs):
        began = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            phases.append((name(args) if callable(name) else name, round(time.perf_counter() - began, 3)))
    return wrapper


def _verb(args) -> str:
    argv = [a for a in args[1] if not a.startswith("-")]
    for verb in ("manifest", "receive", "create-job", "start", "status"):
        if verb in argv:
            return f"remote: {verb}"
    return "remote: probe the host's Python and runtime"


def main() -> None:
    spec = sys.argv[1]
    from launcher import early

    early.start(["launch", spec])  # as launcher.entry does first: the host session begins now
    for name in ("launcher.lean.launching", "launcher.jobs.launch", "launcher.spec", "launcher.backends"):
        importlib.import_module(name)  # what `tether launch` loads (the lean path: no typer)
    from launcher import entry
    from launcher.entry import main as cli
    from launcher.transfer import sync
    from launcher.transport import openssh

    phases.append(("Python start and tether's imports", round(time.perf_counter() - T0, 3)))
    from launcher.transport import launch_session as session

    sync.scan = _timed("scan the workdir (hashes cached)", sync.scan)
    openssh.OpenSshHost.run = _timed(_verb, openssh.OpenSshHost.run)
    session.PendingLaunch.finish = _timed("remote session: start, lock and manifest (what the scan did not hide)",
                                          session.PendingLaunch.finish)
    session.LaunchSession.create = _timed("remote session: create the job", session.LaunchSession.create)
    session.LaunchSession.start = _timed("remote session: start its agent", session.LaunchSession.start)
    sync.push = _timed("send what changed", sync.push)
    sys.argv = ["tether", "launch", spec]
    early.start = lambda args: None  # begun above, before the imports, as a real launch does
    entry.exit_quickly = sys.exit    # the phases are printed below, before the process ends
    try:
        cli()
    except SystemExit:
        pass
    finally:
        total = time.perf_counter() - T0
        phases.append(("the rest (the spec, the registry, printing)", round(total - sum(t for _, t in phases), 3)))
        phases.append(("total", round(total, 3)))
        print("PHASES " + json.dumps(phases), file=sys.stderr)


if __name__ == "__main__":
    main()
