"""`tether status` and `tether jobs` start their SSH commands before the rest of tether is loaded: the
connection (a handshake, or a command over the shared one) runs while Python imports the status
path (and rich to draw it), which takes the answer from here (OpenSshHost.run looks for its exact
command line: transport/prestarted.py). Anything unusual (another verb, an option the lean path
does not read, an unknown job, a host that is not reached over OpenSSH) starts nothing, and the
normal path runs as always; a command started here and not taken is ended when tether exits."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Dict, List, Sequence

from launcher.transport import prestarted


def start(args: Sequence[str]) -> None:
    try:
        _start(list(args))
    except Exception:  # never at the cost of the command: the normal path asks on its own
        prestarted.discard()


def _start(args: List[str]) -> None:
    """The command line read as the lean path reads it (lean/verbs.py): what it would not run
    itself starts nothing here."""
    from launcher.lean.verbs import SPARK_ROWS, parse

    parsed = parse(args)
    if parsed is None or parsed[0] not in ("status", "jobs"):
        return
    job, as_json = parsed[1].get("job"), parsed[1]["as_json"]

    from launcher.registry import Registry
    from launcher.settings import places
    from launcher.transport.agent_client import AgentClient

    recent = SPARK_ROWS if job and not as_json else 0
    where = places()
    registry = Registry(where.registry)
    try:
        records = [registry.resolve(job)] if job else registry.all()
    finally:
        registry.close()
    groups: Dict[str, list] = {}
    for r in records:
        if r.kind == "agent" and r.endpoint.get("kind") != "local" and (len(records) == 1 or r.kept_answer is None):
            groups.setdefault(json.dumps(r.endpoint, sort_keys=True), []).append(r)
    for group in groups.values():
        host = _openssh_host(group[0].endpoint, where)
        if host is None:  # paramiko: nothing to start early
            return
        client = AgentClient(host, group[0].python, group[0].runtime_dir)
        full = host.command_line(client.status_argv([r.job_dir for r in group], recent))
        prestarted.add(full, subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_environ()))


def _openssh_host(endpoint: dict, where):
    """The host as launcher.transport.connect.ssh_host makes it for a status read (the same
    command line, or nothing is taken from here), or None where that would not be OpenSSH."""
    if not shutil.which("ssh") or os.environ.get("TETHER_NO_OPENSSH"):
        return None
    from launcher.transport.endpoint import Endpoint
    from launcher.transport.openssh import OpenSshHost, control_dir

    return OpenSshHost(Endpoint.of(endpoint), where.known_hosts, ssh_config=where.ssh_config,  # type: ignore[arg-type]
                       control=control_dir(where.data), connect_timeout_s=float(endpoint.get("connect_timeout_s", 15)),
                       retry_s=0.0)


def _environ():
    from launcher.transport.host import child_environ

    return child_environ()
