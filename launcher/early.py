"""`tether status` and `tether jobs` start their SSH commands before the CLI is loaded: the
connection (a handshake, or a command over the shared one) runs while Python imports typer
and rich, and the status path takes the answer from here (OpenSshHost.run looks for its exact
command line). Anything unusual (another verb, an option, an unknown job, a host that is not
reached over OpenSSH) starts nothing, and the normal path runs as always; a command started
here and not taken is ended when tether exits."""

from __future__ import annotations

import atexit
import json
import subprocess
from typing import Dict, List, Optional, Sequence, Tuple

SPARK_ROWS = 64   # progress rows `tether status JOB` draws (the CLI's own path asks the same)

_started: Dict[Tuple[str, ...], subprocess.Popen] = {}


def start(args: Sequence[str]) -> None:
    try:
        _start(list(args))
    except Exception:  # never at the cost of the command: the normal path asks on its own
        discard()


def take(argv: Sequence[str]) -> Optional[subprocess.Popen]:
    """The process started early for exactly this command line, if any (once)."""
    return _started.pop(tuple(argv), None)


def discard() -> None:
    for proc in _started.values():
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    _started.clear()


def _start(args: List[str]) -> None:
    if not args or args[0] not in ("status", "jobs"):
        return
    named = [a for a in args[1:] if a != "--json"]
    if any(a.startswith("-") for a in named) or len(named) > (1 if args[0] == "status" else 0):
        return
    recent = SPARK_ROWS if named and "--json" not in args else 0

    from launcher.registry import Registry
    from launcher.settings import places
    from launcher.transport.connect import STATUS_RETRY_S, host_for_record
    from launcher.transport.agent_client import AgentClient

    where = places()
    registry = Registry(where.registry)
    try:
        records = [registry.resolve(named[0])] if named else registry.all()
    finally:
        registry.close()
    groups: Dict[str, list] = {}
    for r in records:
        if r.kind == "agent" and r.endpoint.get("kind") != "local":
            groups.setdefault(json.dumps(r.endpoint, sort_keys=True), []).append(r)
    atexit.register(discard)
    for group in groups.values():
        host = host_for_record(group[0], where, max_retry_s=STATUS_RETRY_S)
        argv = getattr(host, "command_line", None)
        if argv is None:  # paramiko: nothing to start early
            return
        client = AgentClient(host, group[0].python, group[0].runtime_dir)
        full = argv(client.status_argv([r.job_dir for r in group], recent))
        _started[tuple(full)] = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                 env=_environ())


def _environ():
    from launcher.transport.host import child_environ

    return child_environ()
