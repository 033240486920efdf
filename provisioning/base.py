"""The shapes every provider hands the launcher. Provider status strings stop at each provider's
border; above it there is only InstanceState."""

from __future__ import annotations

import socket
from enum import Enum
from typing import List, Optional, Protocol

from pydantic import BaseModel, ConfigDict, Field

from provisioning.endpoint_name import known_hosts_name


class InstanceState(str, Enum):
    PROVISIONING = "PROVISIONING"
    READY = "READY"
    STOPPED = "STOPPED"
    DEAD = "DEAD"        # will never become ready: destroy it and try another offer
    GONE = "GONE"        # destroyed, or no longer known to the provider


class SshEndpoint(BaseModel):
    """How to reach a host over SSH. host_key_alias names its key in tether's known_hosts
    (cloud hosts are keyed by instance id, so a recycled address is not trusted blindly)."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    host: str
    port: int = Field(22, ge=1, le=65535)
    user: Optional[str] = None
    identity_file: Optional[str] = None
    proxy_command: Optional[str] = None
    host_key_alias: Optional[str] = None
    proxy_jump: Optional[str] = None       # ~/.ssh/config's ProxyJump (bastion hosts), for OpenSSH
    config_host: Optional[str] = None      # the name ~/.ssh/config knows it by (an alias), if any
    # A provider that logs in by password first (Novita): used once to install our key, never
    # stored (excluded from every dump).
    bootstrap_password: Optional[str] = Field(None, exclude=True, repr=False)

    @property
    def known_hosts_name(self) -> str:
        return known_hosts_name(self.host, self.port, self.host_key_alias)

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"{user}{self.host}:{self.port}"


class ProviderError(Exception):
    """A provider refused or failed; one line for the user, and what to do. `status` is the
    HTTP status and `code` the provider's own error code, where the answer had them: callers
    decide "not found" from these, never from the message text."""

    def __init__(self, what: str, todo: str = "", *, status: Optional[int] = None,
                 code: Optional[str] = None) -> None:
        super().__init__(what)
        self.what, self.todo = what, todo
        self.status, self.code = status, code

    @property
    def not_found(self) -> bool:
        return self.status == 404


class AuthFailed(ProviderError):
    """The API key was refused (401/403)."""


class OfferGone(ProviderError):
    """The offer was taken or withdrawn before we could rent it."""


class NotReady(ProviderError):
    """An instance did not come up (dead, or past its deadline): destroy it, try another."""


class RateLimited(ProviderError):
    """The provider kept answering 429 for longer than we back off: try again later."""


class AnswerLost(ProviderError):
    """A request that must not be repeated (renting) was sent, but its answer never came:
    it may or may not have taken effect."""


class Resources(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)

    gpu: Optional[str] = None            # "RTX_4090", "H100" (spaces or underscores)
    num_gpus: int = 1
    max_price: Optional[float] = None    # $/h for the whole instance
    disk_gb: float = 40.0
    min_reliability: float = 0.98
    image: str = "pytorch/pytorch:latest"


class Offer(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)

    provider: str
    id: str
    gpu: str
    num_gpus: int
    price_per_hour: float
    reliability: Optional[float] = None
    location: Optional[str] = None
    disk_gb: Optional[float] = None


class CreateRequest(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)

    label: str
    public_key: str                      # our SSH public key, installed on the instance
    image: str = "pytorch/pytorch:latest"
    disk_gb: float = 40.0


class Instance(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)

    provider: str
    id: str
    label: str = ""
    price_per_hour: Optional[float] = None
    created: float = 0.0
    teardown_key: Optional[str] = None   # an instance-scoped key, where the provider gives one


class Teardown(BaseModel):
    """A plain HTTP request the agent sends to destroy its own instance (urllib, no SDK)."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    method: str
    url: str
    headers: dict


class Provider(Protocol):
    """A few verbs per cloud; its status strings never leave its module."""

    name: str
    rented: bool          # True: it bills until destroyed

    def offers(self, want: Resources) -> List[Offer]: ...
    def create(self, offer: Offer, req: CreateRequest) -> Instance: ...
    def wait_ready(self, inst: Instance, deadline: float) -> Optional[SshEndpoint]: ...
    def state(self, inst: Instance) -> InstanceState: ...
    def destroy(self, inst: Instance) -> None: ...
    def teardown(self, inst: Instance) -> Optional[Teardown]: ...


def port_open(host: str, port: int, timeout: float = 3.0) -> bool:
    """True if something accepts TCP connections there (an instance's sshd is up)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
