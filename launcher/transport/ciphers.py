"""Which cipher tether's `ssh` asks for first. OpenSSH puts chacha20-poly1305 first because it
is fast without AES instructions; with them (every x86 since 2010, Apple silicon, most arm64),
AES-GCM costs a third less CPU, and over a fast link a pull or a first sync is bound by that
CPU (bench/RESULTS.md). The list is OpenSSH's own default set, reordered: nothing is added or
weakened, and a server that lacks AES-GCM agrees on the next one. A `Ciphers` line in the
user's config (or a file it includes) wins: then tether says nothing about ciphers."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Dict, Optional, Tuple

AES_FIRST = ("aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,"
             "aes128-ctr,aes192-ctr,aes256-ctr")
_CIPHERS_LINE = re.compile(r"^\s*ciphers(\s|=)", re.I | re.M)
_INCLUDE_LINE = re.compile(r"^\s*include(?:\s*=\s*|\s+)(.+)$", re.I | re.M)
_cache: Dict[Tuple[str, int], Optional[str]] = {}


def has_aes_instructions(cpuinfo: str = "/proc/cpuinfo", system: Optional[str] = None) -> bool:
    """This machine's CPU encrypts AES in hardware (its flags say `aes`; macOS: every Mac since 2010)."""
    system = system or sys.platform
    if system == "darwin":
        return True
    if not system.startswith("linux"):
        return False
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            for line in f:   # the first processor's flags (x86) or features (arm64) line says it
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return "aes" in value.split()
    except OSError:
        pass
    return False


def sets_ciphers(config: Path, depth: int = 0) -> bool:
    """The config, or a file it includes, has a Ciphers line (in any Host block: the user chose)."""
    try:
        text = config.read_text(errors="replace")
    except OSError:
        return False
    if _CIPHERS_LINE.search(text):
        return True
    if depth >= 4:
        return False
    import glob   # rarely needed: not loaded before a status read's ssh

    for value in _INCLUDE_LINE.findall(text):
        for pattern in value.split():
            pattern = os.path.expanduser(pattern.strip('"'))
            if not os.path.isabs(pattern):   # ssh(1): relative to ~/.ssh in a user's config
                pattern = os.path.join(os.path.expanduser("~/.ssh"), pattern)
            if any(sets_ciphers(Path(p), depth + 1) for p in sorted(glob.glob(pattern))):
                return True
    return False


def preferred(config: Optional[Path], aes: Optional[bool] = None) -> Optional[str]:
    """The Ciphers value tether gives `ssh`, or None to leave OpenSSH's (or the user's) order."""
    if not (has_aes_instructions() if aes is None else aes):
        return None
    if config is None:
        return AES_FIRST
    try:
        key = (str(config), config.stat().st_mtime_ns)
    except OSError:
        return AES_FIRST
    if key not in _cache:
        _cache[key] = None if sets_ciphers(config) else AES_FIRST
    return _cache[key]
