"""Provider API keys and tether's own SSH key. Keys come from the environment or a 0600 file
in tether's data folder; they are never printed, logged, or stored in the registry."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Mapping, Optional, Tuple

from provisioning.registry import API_KEY_ENV

from launcher.errors import UsageError
from launcher.settings import Places


def _file(places: Places) -> Path:
    return places.data / "credentials.json"


def api_key(provider: str, places: Places, environ: Mapping[str, str]) -> Optional[str]:
    env = API_KEY_ENV.get(provider)
    if env and environ.get(env):
        return environ[env]
    path = _file(places)
    if not path.exists():
        return None
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsageError(f"{path} is readable by others", f"chmod 600 {path}")
    return json.loads(path.read_text()).get(provider)


def store_api_key(provider: str, key: str, places: Places) -> Path:
    path = _file(places)
    data = json.loads(path.read_text()) if path.exists() else {}
    data[provider] = key.strip()
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)
    return path


def ssh_keypair(places: Places) -> Tuple[Path, str]:
    """tether's own ed25519 key for hosts it rents: (private key path, public key line)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = places.data / "id_ed25519"
    public = places.data / "id_ed25519.pub"
    if not private.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
        pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        fd = os.open(str(private), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        public.write_text(pub.decode() + " tether\n")
    return private, public.read_text().strip()
