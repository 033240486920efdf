"""SSH machines you own: a provider like the others, with nothing to rent and nothing to
destroy. (The local host needs no provider: the launcher runs its commands directly.)"""

from __future__ import annotations

import socket
import time
from typing import List, Optional

from .base import (CreateRequest, Instance, InstanceState, NotReady, Offer, ProviderError, Resources,
                   SshEndpoint, Teardown)


class _Owned:
    """A host that exists already: always ready, nothing to destroy."""

    rented = False

    def state(self, inst: Instance) -> InstanceState:
        return InstanceState.READY

    def destroy(self, inst: Instance) -> None:
        pass

    def teardown(self, inst: Instance) -> Optional[Teardown]:
        return None


class SshProvider(_Owned):
    """One or more fixed SSH hosts: each is an offer; the first that answers is used."""

    name = "ssh"

    def __init__(self, endpoints: List[SshEndpoint]) -> None:
        if not endpoints:
            raise ProviderError("ssh: no host address given", "set host.address (or --host)")
        self.endpoints = endpoints

    def offers(self, want: Resources) -> List[Offer]:
        return [Offer(provider=self.name, id=str(i), gpu=str(ep), num_gpus=want.num_gpus, price_per_hour=0.0)
                for i, ep in enumerate(self.endpoints)]

    def create(self, offer: Offer, req: CreateRequest) -> Instance:
        return Instance(provider=self.name, id=offer.id, label=req.label, price_per_hour=0.0, created=time.time())

    def wait_ready(self, inst: Instance, deadline: float) -> SshEndpoint:
        ep = self.endpoints[int(inst.id)]
        if ep.proxy_command:
            return ep  # reachable only through its proxy: the SSH connection itself will tell
        while True:
            try:
                with socket.create_connection((ep.host, ep.port), timeout=3):
                    return ep
            except OSError as exc:
                if time.time() > deadline:
                    raise NotReady(f"ssh: {ep} does not answer ({exc})") from None
                time.sleep(1)
