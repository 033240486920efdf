"""`user@host[:port]` or a ~/.ssh/config alias -> SshEndpoint. The config is honoured the way
OpenSSH reads it (HostName, Port, User, IdentityFile, ProxyCommand, ProxyJump, HostKeyAlias;
OpenSSH itself, given the same config, applies the rest); what the address spells out wins
over the config."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Dict, Optional

from provisioning.base import SshEndpoint

from launcher.errors import UsageError

_ADDRESS = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:@\s\[\]]+))(?::(?P<port>\d+))?$")


def parse_endpoint(address: str, ssh_config: Path, identity_file: Optional[str] = None,
                   cache_dir: Optional[Path] = None) -> SshEndpoint:
    m = _ADDRESS.match(address.strip())
    if not m:
        raise UsageError(f"host address {address!r} is not user@host[:port]",
                         "e.g. root@203.0.113.7:2222, or an alias from ~/.ssh/config")
    name = m.group("v6") or m.group("host")
    conf = config_lookup(name, ssh_config, cache_dir) if ssh_config.is_file() else {}
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


RACY_S = 2.0


def config_lookup(name: str, ssh_config: Path, cache_dir: Optional[Path] = None) -> Dict[str, Any]:
    """ssh_config's settings for a host name, read by paramiko's reader. Kept (cache_dir) per
    name and version of the file (inode, size, mtime, ctime): paramiko's import alone costs a
    launch 0.2 s."""
    st = ssh_config.stat()
    keep: Optional[Path] = None
    if cache_dir is not None:
        key = json.dumps([name, os.path.realpath(ssh_config), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns])
        keep = cache_dir / "ssh-config" / (hashlib.sha256(key.encode()).hexdigest()[:24] + ".json")
        try:
            kept = json.loads(keep.read_text())
            if isinstance(kept, dict) and all(isinstance(v, str) or (isinstance(v, list) and all(
                    isinstance(x, str) for x in v)) for v in kept.values()):
                return kept
        except (OSError, ValueError):  # damaged: read the file again
            pass
    import paramiko  # its reader of ssh_config; imported only when an address is parsed

    text = ssh_config.read_text(errors="replace")
    conf = dict(paramiko.SSHConfig.from_text(text).lookup(name))
    # Not kept: Match blocks and hostname canonicalisation (their answers can change without
    # the file changing), or a file changed within RACY_S (a same-size edit in the same tick).
    if keep is not None and not re.search(r"^\s*(match|canonicalizehostname)\b", text, re.I | re.M) \
            and time.time() - max(st.st_mtime, st.st_ctime) > RACY_S:
        try:
            doc = json.dumps(conf)
        except (TypeError, ValueError):  # a value JSON cannot hold: read every time
            return conf
        keep.parent.mkdir(parents=True, exist_ok=True)
        tmp = keep.with_name(f"{keep.name}.{os.getpid()}.tmp")
        tmp.write_text(doc)
        os.replace(tmp, keep)
    return conf
