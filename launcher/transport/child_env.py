"""The environment tether's children (ssh, rsync, local agent commands) get. Its own module,
light to load: `tether status` starts its ssh before the rest of tether loads (early.py)."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # neither typing nor re is loaded before a status read's ssh starts
if TYPE_CHECKING:
    from typing import Dict, Mapping

_SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "APIKEY", "API_KEY")


def _secret_name(name: str) -> bool:
    """Named like a secret, in any case: a word above in it, or ending in _KEY, or KEY itself."""
    up = name.lower().upper()  # both ways: every case form of a letter lands on one
    return any(w in up for w in _SECRET_WORDS) or up.endswith("_KEY") or up == "KEY"


def child_environ(environ: Mapping[str, str] = os.environ) -> Dict[str, str]:
    """The environment for ssh, rsync and local agent commands: the laptop's, less anything
    named like a secret. ssh would send such a variable to the host wherever ~/.ssh/config
    says SendEnv, and a shared connection keeps it in a long-lived process; secrets reach a
    job only as its spec says, on stdin."""
    return {k: v for k, v in environ.items() if not _secret_name(k)}
