"""The shapes every provider hands the launcher. Provider status strings stop at each provider's
border; above it there is only InstanceState."""

from __future__ import annotations

from enum import Enum
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field


class InstanceState(str, Enum):
    PROVISIONING = "PROVISIONING"
    READY = "READY"
    STOPPED = "STOPPED"
    DEAD = "DEAD"        # will never become ready: destroy it and try another offer
    GONE = "GONE"        # destroyed, or no longer known to the provider


class SshEndpoint(BaseModel):
    """How to reach a host over SSH. host_key_alias names its key in tether's known_hosts
    (cloud hosts are keyed by instance id, so a recycled address is not trusted blindly)."""

    model_config = ConfigDict(frozen=True)

    host: str
    port: int = Field(22, ge=1, le=65535)
    user: Optional[str] = None
    identity_file: Optional[str] = None
    proxy_command: Optional[str] = None
    host_key_alias: Optional[str] = None

    @property
    def known_hosts_name(self) -> str:
        if self.host_key_alias:
            return self.host_key_alias
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"{user}{self.host}:{self.port}"
