"""`user@host[:port]` or a ~/.ssh/config alias -> SshEndpoint. The config is honoured the way
OpenSSH reads it (HostName, Port, User, IdentityFile, ProxyCommand, ProxyJump, HostKeyAlias;
OpenSSH itself, given the same config, applies the rest); what the address spells out wins
over the config."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from provisioning.base import SshEndpoint

from launcher.errors import UsageError

_ADDRESS = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:@\s\[\]]+))(?::(?P<port>\d+))?$")


def parse_endpoint(address: str, ssh_config: Path, identity_file: Optional[str] = None) -> SshEndpoint:
    m = _ADDRESS.match(address.strip())
    if not m:
        raise UsageError(f"host address {address!r} is not user@host[:port]",
                         "e.g. root@203.0.113.7:2222, or an alias from ~/.ssh/config")
    name = m.group("v6") or m.group("host")
    conf = {}
    if ssh_config.is_file():
        from launcher.transport.ssh_config import lookup

        conf = lookup(ssh_config, name)
        if conf is None:  # a config the lean reader is not sure of: paramiko's reader, as always
            import paramiko

            conf = paramiko.SSHConfig.from_path(str(ssh_config)).lookup(name)
    port = m.group("port") or conf.get("port") or 22
    identities = conf.get("identityfile") or []
    return SshEndpoint(
        host=conf.get("hostname", name),
        port=int(port),
        user=m.group("user") or conf.get("user"),
        identity_file=identity_file or (identities[0] if identities else None),
        proxy_command=conf.get("proxycommand"),
        host_key_alias=conf.get("hostkeyalias"),
        proxy_jump=conf.get("proxyjump"),
        config_host=name,
    )
