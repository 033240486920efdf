"""Trust on first use, into tether's own known_hosts; a changed key is refused, never replaced."""

from __future__ import annotations

import fcntl
import os
import shlex
from pathlib import Path

import paramiko

from launcher.errors import HostKeyChangedError


class TrustOnFirstUse(paramiko.MissingHostKeyPolicy):
    """Checks every server key against our file under `name` (alias or [host]:port).

    The client is given no keys of its own, so paramiko hands every key to this policy and
    the decision lives in one place: known and equal -> accept; unknown -> record and accept;
    known with any other key, of any type -> refuse.
    """

    def __init__(self, known_hosts: Path, name: str) -> None:
        self.path, self.name = known_hosts, name

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # two tether processes may meet a host at once
            keys = paramiko.HostKeys()
            if self.path.stat().st_size:
                keys.load(str(self.path))
            known = keys.lookup(self.name)
            if known:
                if known.get(key.get_name()) == key:
                    return
                raise HostKeyChangedError(
                    f"host key for {self.name} has changed since tether first trusted it "
                    f"(now {key.get_name()} {key.get_fingerprint().hex()})",
                    "if the host was rebuilt, forget the old key with "
                    f"`ssh-keygen -R {shlex.quote(self.name)} -f {shlex.quote(str(self.path))}` and retry",
                )
            f.seek(0, os.SEEK_END)
            f.write(f"{self.name} {key.get_name()} {key.get_base64()}\n")
            f.flush()
            os.fsync(f.fileno())
