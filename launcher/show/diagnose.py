"""A failed job's last words, read on the laptop: when the error is a missing file that this
laptop has but sync left out, say which rule left it out and how to send it."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Iterable, List, Optional


# Python's, the shell's and most tools' ways of saying a file is not there.
_MISSING = [
    re.compile(r"No such file or directory: '([^'\n]+)'"),
    re.compile(r"can't open file '([^'\n]+)'"),
    re.compile(r"([^\s:'\"]+): No such file or directory"),
    re.compile(r"(?:FileNotFoundError|OSError): .*?'([^'\n]+)'"),
]


def missing_paths(lines: Iterable[str]) -> List[str]:
    found: List[str] = []
    for line in lines:
        for pattern in _MISSING:
            for m in pattern.finditer(line):
                if m.group(1) not in found:
                    found.append(m.group(1))
    return found


def _relative_to_workdir(path: str, job_dir: str) -> Optional[str]:
    """A path the job named, as a path in the workdir: relative ones are (the job runs in its
    code snapshot); absolute ones only when they point into that snapshot."""
    p = PurePosixPath(path)
    if p.is_absolute():
        code = PurePosixPath(job_dir) / "code"
        try:
            p = p.relative_to(code)
        except ValueError:
            return None
    parts = [x for x in p.parts if x not in (".", "")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def unsent_files(log_tail: Iterable[str], workdir: Optional[str], job_dir: str) -> List[str]:
    """One line per file the job could not find that exists here but was left out of sync."""
    if not workdir or not Path(workdir).is_dir():
        return []
    out = []
    for path in missing_paths(log_tail):
        rel = _relative_to_workdir(path, job_dir)
        if rel is None or not (Path(workdir) / rel).exists():
            continue
        from launcher.transfer.ignore import why_left_out  # pathspec: only for a job that failed on a file

        left = why_left_out(Path(workdir), rel)
        if left is not None:
            what, rule = left
            out.append(f"{rel} is on this laptop but was not sent ({rule}): add `!{what}` to .tetherignore "
                       "to send it (or have the job read it from elsewhere on the host)")
    return out
