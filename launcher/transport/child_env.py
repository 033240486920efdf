"""The environment tether's children (ssh, rsync, local agent commands) get. Its own module,
light to load: `tether status` starts its ssh before the rest of tether loads (early.py)."""

from __future__ import annotations

import os
import re
from typing import Dict, Mapping

_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|API_?KEY|_KEY$|^KEY$", re.I)


def child_environ(environ: Mapping[str, str] = os.environ) -> Dict[str, str]:
    """The environment for ssh, rsync and local agent commands: the laptop's, less anything
    named like a secret. ssh would send such a variable to the host wherever ~/.ssh/config
    says SendEnv, and a shared connection keeps it in a long-lived process; secrets reach a
    job only as its spec says, on stdin."""
    return {k: v for k, v in environ.items() if not _SECRET_NAME.search(k)}
