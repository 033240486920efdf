"""An SSH endpoint as OpenSSH's command line needs it: provisioning.base.SshEndpoint's fields,
without pydantic (its import alone costs more than a status read's connection). Made from a
registry record's endpoint, which tether wrote from a validated SshEndpoint."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping, Optional

from provisioning.endpoint_name import known_hosts_name


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int = 22
    user: Optional[str] = None
    identity_file: Optional[str] = None
    proxy_command: Optional[str] = None
    host_key_alias: Optional[str] = None
    proxy_jump: Optional[str] = None
    config_host: Optional[str] = None

    @classmethod
    def of(cls, endpoint: Mapping[str, Any]) -> "Endpoint":
        """From a record's endpoint dict: its other keys (kind, timeouts) left out."""
        names = {f.name for f in fields(cls)}
        ep = cls(**{k: v for k, v in endpoint.items() if k in names})
        return ep if isinstance(ep.port, int) else cls(**{**ep.__dict__, "port": int(ep.port)})

    @property
    def known_hosts_name(self) -> str:
        return known_hosts_name(self.host, self.port, self.host_key_alias)

    def __str__(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"
