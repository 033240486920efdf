"""Which cipher tether's `ssh` asks for first. OpenSSH puts chacha20-poly1305 first because it
is fast without AES instructions; with them (every x86 since 2010, Apple silicon, most arm64),
AES-GCM costs a third less CPU, and over a fast link a pull or a first sync is bound by that
CPU (bench/RESULTS.md). The list is OpenSSH's own default set, reordered, and only the names
this `ssh` knows (`ssh -Q cipher`: a build without OpenSSL has no AES-GCM, a FIPS build no
chacha20, and ssh refuses a list with a name it does not know): nothing is added or weakened,
and a server that lacks AES-GCM agrees on the next one. A `Ciphers` line in the user's config
(or a file it includes) wins: then tether says nothing about ciphers."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, FrozenSet, List, Optional, Tuple

AES_FIRST = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
             "aes128-ctr", "aes192-ctr", "aes256-ctr")
_AES_GCM = AES_FIRST[:2]
# A config line's keyword (ssh_config(5): case-insensitive, may be quoted) and the rest.
_LINE = re.compile(r'\s*"?([A-Za-z]+)"?(?:\s*=\s*|\s+)(.*)')
MAX_INCLUDE_DEPTH = 16   # OpenSSH's READCONF_MAX_DEPTH
_configs: Dict[Tuple[str, int], bool] = {}
_known: Dict[str, FrozenSet[str]] = {}
_aes: List[bool] = []


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
    """The config, or a file it includes, has a Ciphers line (in any Host block: the user
    chose). A line this cannot read says yes: the user's config decides then."""
    try:
        text = config.read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        keyword, value = match.group(1).lower(), match.group(2)
        if keyword == "ciphers":
            return True
        if keyword == "include" and _includes_ciphers(value, depth):
            return True
    return False


def _includes_ciphers(value: str, depth: int) -> bool:
    import glob   # rarely needed: not loaded before a status read's ssh
    import shlex

    if depth + 1 >= MAX_INCLUDE_DEPTH:
        return True
    try:
        patterns = shlex.split(value, comments=True)
    except ValueError:
        return True
    for pattern in patterns:
        pattern = os.path.expanduser(pattern)
        if not os.path.isabs(pattern):   # ssh_config(5): relative to ~/.ssh in a user's config
            pattern = os.path.join(os.path.expanduser("~/.ssh"), pattern)
        if any(sets_ciphers(Path(p), depth + 1) for p in sorted(glob.glob(pattern))):
            return True
    return False


def known_ciphers(cache: Optional[Path] = None) -> FrozenSet[str]:
    """The ciphers this machine's `ssh` knows (`ssh -Q cipher`), kept in cache (a private
    folder: the shared connections' one) under the binary's path, size and time, so a status
    read does not start it each time. Empty where it cannot be asked."""
    ssh = shutil.which("ssh")   # as connect.py finds it (shutil is loaded there already)
    if ssh is None:
        return frozenset()
    st = os.stat(ssh)
    key = hashlib.sha256(f"{ssh}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:16]
    if key in _known:
        return _known[key]
    path = cache / f"ssh-ciphers-{key}" if cache is not None else None
    try:
        names = path.read_text().split() if path is not None else []
    except OSError:
        names = []
    if not names:
        try:
            done = subprocess.run([ssh, "-Q", "cipher"], capture_output=True, timeout=10)
            names = done.stdout.decode(errors="replace").split() if done.returncode == 0 else []
        except (OSError, subprocess.TimeoutExpired):
            names = []
        if names and path is not None:
            from launcher.cache_files import write_whole

            write_whole(path, ("\n".join(names) + "\n").encode())
    _known[key] = frozenset(names)
    return _known[key]


def preferred(config: Optional[Path], cache: Optional[Path] = None, aes: Optional[bool] = None,
              known: Optional[FrozenSet[str]] = None) -> Optional[str]:
    """The Ciphers value tether gives `ssh`, or None to leave OpenSSH's (or the user's) order."""
    if aes is None:
        if not _aes:
            _aes.append(has_aes_instructions())
        aes = _aes[0]
    if not aes or (config is not None and _config_sets_ciphers(config)):
        return None
    known = known_ciphers(cache) if known is None else known
    order = [name for name in AES_FIRST if name in known]
    return ",".join(order) if order and order[0] in _AES_GCM else None


def _config_sets_ciphers(config: Path) -> bool:
    try:
        key = (str(config), config.stat().st_mtime_ns)
    except OSError:
        return False
    if key not in _configs:
        _configs[key] = sets_ciphers(config)
    return _configs[key]
