"""From a spec's host block (at launch) or a registry record (afterwards) to a connected Host."""

from __future__ import annotations

import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from provisioning.base import CreateRequest, NotReady, Resources, SshEndpoint
from provisioning.fixed import SshProvider

from launcher.transport.address import parse_endpoint
from launcher.transport.agent_client import AgentClient
from launcher.errors import UnreachableError, UsageError
from launcher.registry import JobRecord
from launcher.transport.host import Host, LocalHost
from launcher.settings import Places
from launcher.spec import HostSpec


@dataclass(frozen=True)
class Target:
    """A host to use, how to find it again, and how to run Python there."""

    host: Host
    endpoint: Dict[str, Any]       # stored in the registry
    python: str
    path_prepend: List[str]        # prepended to the workload's PATH


def target_for_spec(hs: HostSpec, places: Places) -> Target:
    if hs.provider == "local":
        # The local host runs jobs with tether's own Python, so the demo's torch is found.
        python = hs.python or sys.executable
        return Target(LocalHost(), {"kind": "local"}, python, [str(Path(sys.executable).parent)])
    if hs.provider == "ssh":
        ep = _first_answering(hs, places)
        endpoint = {"kind": "ssh", **ep.model_dump(),
                    "connect_timeout_s": hs.connect_timeout_s, "retry_s": hs.retry_s}
        return Target(_ssh(endpoint, places), endpoint, hs.python or "python3", [])
    raise UsageError(f"provider {hs.provider!r} is not available in this version",
                     "use local, ssh, vast or novita")


def _first_answering(hs: HostSpec, places: Places) -> SshEndpoint:
    """host.address may list several machines you own: the first whose sshd answers."""
    addresses = hs.address if isinstance(hs.address, list) else [hs.address or ""]
    provider = SshProvider([parse_endpoint(a, places.ssh_config, hs.identity_file) for a in addresses])
    if len(addresses) == 1:
        return provider.endpoints[0]  # one host: the SSH connection's own retries decide
    problems = []
    for offer in provider.offers(Resources(num_gpus=hs.num_gpus)):
        inst = provider.create(offer, CreateRequest(label="", public_key=""))
        try:
            return provider.wait_ready(inst, time.time() + hs.connect_timeout_s)
        except NotReady as exc:
            problems.append(exc.what)
    raise UnreachableError(f"none of the hosts answers ({'; '.join(problems)})",
                           "check host.address and that sshd runs there")


def target_for_rented(ep: SshEndpoint, hs: HostSpec, places: Places) -> Target:
    endpoint = {"kind": "ssh", **ep.model_dump(), "connect_timeout_s": hs.connect_timeout_s, "retry_s": hs.retry_s}
    return Target(_ssh(endpoint, places), endpoint, hs.python or "python3", [])


STATUS_RETRY_S = 0.0  # a status read does not retry: a dead host costs its connect timeout, once


def host_for_record(rec: JobRecord, places: Places, max_retry_s: Optional[float] = None) -> Host:
    """max_retry_s caps the connection retries: a status poll should not wait a minute."""
    if rec.endpoint.get("kind") == "local":
        return LocalHost()
    endpoint = dict(rec.endpoint)
    if max_retry_s is not None:
        endpoint["retry_s"] = min(float(endpoint.get("retry_s", 60)), max_retry_s)
    return _ssh(endpoint, places)


@contextmanager
def agent_for(rec: JobRecord, places: Places) -> Iterator[AgentClient]:
    """The agent on a job's host, connected lazily and closed on the way out."""
    client = AgentClient(host_for_record(rec, places), rec.python, rec.runtime_dir)
    try:
        yield client
    finally:
        client.host.close()


def _ssh(endpoint: Dict[str, Any], places: Places) -> Host:
    """OpenSSH, sharing one connection per host across commands, where the system has `ssh`
    (TETHER_NO_OPENSSH=1: not); paramiko otherwise."""
    fields = {k: v for k, v in endpoint.items() if k in SshEndpoint.model_fields}
    ep = SshEndpoint(**fields)
    timeout, retry = float(endpoint.get("connect_timeout_s", 15)), float(endpoint.get("retry_s", 60))
    if shutil.which("ssh") and not os.environ.get("TETHER_NO_OPENSSH"):
        from launcher.transport.openssh import OpenSshHost, control_dir

        return OpenSshHost(ep, places.known_hosts, ssh_config=places.ssh_config, control=control_dir(places.data),
                           connect_timeout_s=timeout, retry_s=retry)
    if ep.proxy_jump:
        raise UsageError(f"{ep} is reached through ProxyJump {ep.proxy_jump}, which needs OpenSSH's ssh",
                         "install openssh-client (or give a ProxyCommand)")
    from launcher.transport.paramiko_host import SshHost

    return SshHost(ep, places.known_hosts, connect_timeout_s=timeout, retry_s=retry)
