"""Text from a host or a workload, made inert before a terminal shows it: no Rich markup it
could inject, no escape or control sequences (colour changes, cursor moves, a new window
title, OSC 52 writing your clipboard). Every such string passes through here on its way out."""

from __future__ import annotations

import re

# C0 controls but tab, DEL, the C1 controls, and whole escape sequences (CSI ... final byte,
# OSC/DCS/APC/PM ... terminated by BEL or ST, or a lone ESC and the byte after it).
_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"                     # CSI
    r"|\x1b[\]P_^X][^\x07\x1b]*(?:\x07|\x1b\\)?"   # OSC, DCS, APC, PM, SOS
    r"|\x1b[@-_]?"                                 # other two-byte escapes, or a lone ESC
    r"|[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]"          # the remaining control characters
)


def plain(text: object, limit: int = 2000) -> str:
    """text without escape sequences or control characters (newlines become spaces): safe to
    print with markup=False."""
    s = str(text)[:limit]
    s = s.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    return _SEQUENCE.sub("", s)


def inert(text: object, limit: int = 2000) -> str:
    """plain(text), with Rich markup escaped: safe inside a string that Rich renders."""
    from rich.markup import escape  # loaded with what renders it: `status --json` loads no rich

    return escape(plain(text, limit))


def plain_lines(text: object, limit: int = 20000) -> str:
    """Like plain, but keeps line breaks (for a log tail)."""
    return "\n".join(_SEQUENCE.sub("", line) for line in str(text)[:limit].splitlines())


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
