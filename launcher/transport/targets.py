"""A spec's host block to a host to launch on (connect.py does a launched job's)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List

from provisioning.base import CreateRequest, NotReady, Resources, SshEndpoint
from provisioning.fixed import SshProvider

from launcher.transport.address import parse_endpoint
from launcher.errors import UnreachableError, UsageError
from launcher.transport.connect import ssh_host
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
        return Target(ssh_host(endpoint, places), endpoint, hs.python or "python3", [])
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
    return Target(ssh_host(endpoint, places), endpoint, hs.python or "python3", [])
