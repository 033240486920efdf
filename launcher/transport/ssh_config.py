"""The few ~/.ssh/config settings an address needs (HostName, Port, User, IdentityFile,
ProxyCommand, ProxyJump, HostKeyAlias), read as paramiko's SSHConfig reads them, without
importing paramiko (its import costs more than a no-change launch's sync). A config this reader
is not sure of (Match blocks, hostname canonicalization, %-tokens in a value we use, a line it
cannot parse) is None: the caller asks paramiko, as before. tests/test_imports.py proves the two
agree on a set of configs."""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
from pathlib import Path
from typing import Any, Dict, List, Optional

KEYS = ("hostname", "port", "user", "identityfile", "proxycommand", "hostkeyalias", "proxyjump")
_SETTING = re.compile(r"(\w+)(?:\s*=\s*|\s+)(.+)")   # paramiko's SETTINGS_REGEX
_UNSURE = {"match", "canonicalizehostname"}
_TILDE = {"identityfile", "proxycommand"}            # keys whose `~` paramiko expands


def lookup(path: Path, name: str) -> Optional[Dict[str, Any]]:
    """{key: value} for KEYS (identityfile a list; hostname defaults to name), or None."""
    blocks = _blocks(path.read_text())
    if blocks is None:
        return None
    found: Dict[str, Any] = {}
    for patterns, settings in blocks:
        if not _matches(patterns, name):
            continue
        for key, value in settings.items():
            if key not in found:
                found[key] = list(value) if isinstance(value, list) else value
            elif key == "identityfile":
                found[key].extend(v for v in value if v not in found[key])
    found.setdefault("hostname", name)
    if any("%" in v for k, vs in found.items() if vs is not None for v in (vs if isinstance(vs, list) else [vs])):
        return None   # tokens: paramiko expands them its way
    home = os.path.expanduser("~")
    for key in _TILDE & found.keys():
        value = found[key]
        if isinstance(value, list):
            found[key] = [v.replace("~", home) for v in value]
        elif value is not None:
            found[key] = value.replace("~", home)
    return found


def _blocks(text: str) -> Optional[List[tuple]]:
    blocks: List[tuple] = []
    patterns: List[str] = ["*"]
    settings: Dict[str, Any] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SETTING.match(line)
        if not m:
            return None
        key, value = m.group(1).lower(), m.group(2)
        if key in _UNSURE:
            return None
        if key == "host":
            blocks.append((patterns, settings))
            try:
                patterns, settings = shlex.split(value), {}
            except ValueError:
                return None
        elif key not in KEYS:
            continue
        elif key == "proxycommand" and value.lower() == "none":
            settings[key] = None   # as paramiko: `none` replaces one given before it in the block
        else:
            value = value[1:-1] if value.startswith('"') and value.endswith('"') else value
            if key == "identityfile":
                settings.setdefault(key, []).append(value)
            else:
                settings.setdefault(key, value)
    blocks.append((patterns, settings))
    return blocks


def _matches(patterns: List[str], target: str) -> bool:
    match = False
    for pattern in patterns:
        if pattern.startswith("!") and fnmatch.fnmatch(target, pattern[1:]):
            return False
        if fnmatch.fnmatch(target, pattern):
            match = True
    return match
