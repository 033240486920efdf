"""A registry record (a job launched before) to a connected host, and to its agent. Kept
light: every status read goes through here."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Optional

from launcher.errors import UsageError
from launcher.registry import JobRecord
from launcher.settings import Places
from launcher.transport.agent_client import AgentClient
from launcher.transport.host import Host, LocalHost

STATUS_RETRY_S = 0.0  # a status read does not retry: a dead host costs its connect timeout, once


def host_for_record(rec: JobRecord, places: Places, max_retry_s: Optional[float] = None,
                    shared: bool = True) -> Host:
    """max_retry_s caps the connection retries: a status poll should not wait a minute.
    shared=False: a connection of its own (one shared with earlier commands to a host that
    has since frozen would not end within the connect timeout)."""
    if rec.endpoint.get("kind") == "local":
        return LocalHost()
    endpoint = dict(rec.endpoint)
    if max_retry_s is not None:
        endpoint["retry_s"] = min(float(endpoint.get("retry_s", 60)), max_retry_s)
    return ssh_host(endpoint, places, shared)


@contextmanager
def agent_for(rec: JobRecord, places: Places) -> Iterator[AgentClient]:
    """The agent on a job's host, connected lazily and closed on the way out."""
    client = AgentClient(host_for_record(rec, places), rec.python, rec.runtime_dir)
    try:
        yield client
    finally:
        client.host.close()


def ssh_host(endpoint: Dict[str, Any], places: Places, shared: bool = True) -> Host:
    """OpenSSH, sharing one connection per host across commands, where the system has `ssh`
    (TETHER_NO_OPENSSH=1: not); paramiko otherwise. The OpenSSH path loads neither pydantic
    nor paramiko (transport/endpoint.py)."""
    timeout, retry = float(endpoint.get("connect_timeout_s", 15)), float(endpoint.get("retry_s", 60))
    if shutil.which("ssh") and not os.environ.get("TETHER_NO_OPENSSH"):
        from launcher.transport.endpoint import Endpoint
        from launcher.transport.openssh import OpenSshHost, control_dir

        return OpenSshHost(Endpoint.of(endpoint), places.known_hosts, ssh_config=places.ssh_config,
                           control=control_dir(places.data) if shared else None, connect_timeout_s=timeout,
                           retry_s=retry, fresh=not shared)
    from provisioning.base import SshEndpoint

    ep = SshEndpoint(**{k: v for k, v in endpoint.items() if k in SshEndpoint.model_fields})
    if ep.proxy_jump:
        raise UsageError(f"{ep} is reached through ProxyJump {ep.proxy_jump}, which needs OpenSSH's ssh",
                         "install openssh-client (or give a ProxyCommand)")
    from launcher.transport.paramiko_host import SshHost

    return SshHost(ep, places.known_hosts, connect_timeout_s=timeout, retry_s=retry)
