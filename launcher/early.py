"""`tether status` and `tether jobs` start their SSH commands before the CLI is loaded: the
connection (a handshake, or a command over the shared one) runs while Python imports typer
and rich, and the status path takes the answer from here (OpenSshHost.run looks for its exact
command line: transport/prestarted.py). Anything unusual (another verb, an option, an unknown
job, a host that is not reached over OpenSSH) starts nothing, and the normal path runs as
always; a command started here and not taken is ended when tether exits."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, fields
from typing import Dict, List, Optional, Sequence

from launcher.transport import prestarted
from provisioning.endpoint_name import known_hosts_name

SPARK_ROWS = 64   # progress rows `tether status JOB` draws (the CLI's own path asks the same)

def start(args: Sequence[str]) -> None:
    try:
        _start(list(args))
    except Exception:  # never at the cost of the command: the normal path asks on its own
        prestarted.discard()


def _start(args: List[str]) -> None:
    if not args or args[0] not in ("status", "jobs"):
        return
    named = [a for a in args[1:] if a != "--json"]
    if any(a.startswith("-") for a in named) or len(named) > (1 if args[0] == "status" else 0):
        return
    recent = SPARK_ROWS if named and "--json" not in args else 0

    from launcher.registry import Registry
    from launcher.settings import places
    from launcher.transport.agent_client import AgentClient

    where = places()
    registry = Registry(where.registry)
    try:
        records = [registry.resolve(named[0])] if named else registry.all()
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


@dataclass(frozen=True)
class _Endpoint:
    """provisioning.base.SshEndpoint's fields OpenSSH's command line is built from, without
    pydantic (its import alone costs more than the connection it would delay)."""

    host: str
    port: int = 22
    user: Optional[str] = None
    identity_file: Optional[str] = None
    proxy_command: Optional[str] = None
    host_key_alias: Optional[str] = None
    proxy_jump: Optional[str] = None
    config_host: Optional[str] = None

    @property
    def known_hosts_name(self) -> str:
        return known_hosts_name(self.host, self.port, self.host_key_alias)

    def __str__(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"


def _openssh_host(endpoint: dict, where):
    """The host as launcher.transport.connect.ssh_host makes it for a status read (the same
    command line, or nothing is taken from here), or None where that would not be OpenSSH."""
    if not shutil.which("ssh") or os.environ.get("TETHER_NO_OPENSSH"):
        return None
    from launcher.transport.openssh import OpenSshHost, control_dir

    names = {f.name for f in fields(_Endpoint)}
    ep = _Endpoint(**{k: v for k, v in endpoint.items() if k in names})
    return OpenSshHost(ep, where.known_hosts, ssh_config=where.ssh_config, control=control_dir(where.data),  # type: ignore[arg-type]
                       connect_timeout_s=float(endpoint.get("connect_timeout_s", 15)), retry_s=0.0)


def _environ():
    from launcher.transport.host import child_environ

    return child_environ()
