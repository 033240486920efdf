"""Where tether keeps its own files on the laptop. TETHER_HOME moves all of them (tests do)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

from launcher.home import data_dir


@dataclass(frozen=True)
class Places:
    data: Path
    ssh_config: Path

    @property
    def known_hosts(self) -> Path:
        return self.data / "known_hosts"

    @property
    def registry(self) -> Path:
        return self.data / "jobs.db"

    @property
    def cache(self) -> Path:
        return self.data / "cache"


def places(environ: Optional[Mapping[str, str]] = None) -> Places:
    env = os.environ if environ is None else environ
    data = Path(data_dir(env))
    data.mkdir(parents=True, exist_ok=True)
    ssh_config = Path(env.get("TETHER_SSH_CONFIG", "~/.ssh/config")).expanduser()
    return Places(data=data, ssh_config=ssh_config)
