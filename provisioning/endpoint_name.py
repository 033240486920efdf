"""The name a host's key is kept under in tether's known_hosts (OpenSSH's own form), in a module
with no imports: `tether status` builds its ssh command line before anything else loads."""

from typing import Optional


def known_hosts_name(host: str, port: int, host_key_alias: Optional[str]) -> str:
    if host_key_alias:
        return host_key_alias
    return host if port == 22 else f"[{host}]:{port}"
