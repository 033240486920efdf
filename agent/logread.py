"""`python -m agent logs`: a job's log, its tail, then (following) what is written until the
job ends, surviving rotation.

Framed (`--framed`, what `tether logs -f` asks for) each chunk goes out behind a header line,
`@<inode> <offset> <length>`, saying where in which file it was read: a follower that lost
its connection asks again `--from <inode>:<offset>` and gets exactly the bytes after the last
chunk it received whole, from the rotated file if the log has rotated meanwhile: no line lost,
none twice.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import IO, Callable, List, Optional, Tuple

Position = Tuple[int, int]   # (inode, offset)


def tail_bytes(path: Path, lines: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max(lines, 1) * 400 - 65536))
            data = f.read()
    except FileNotFoundError:
        return b""
    parts = data.split(b"\n")
    if data.endswith(b"\n"):
        parts = parts[:-1]
    return b"".join(p + b"\n" for p in parts[-lines:]) if lines > 0 else b""


def _generations(path: Path) -> List[Path]:
    """The log and its rotated files, newest first (workload.log, .1, .2, ...)."""
    return [path] + [path.with_name(f"{path.name}.{i}") for i in range(1, 10)]


def _open_at(path: Path, start: Optional[Position]):
    """The file to follow from, positioned: at start (found by inode among the rotated files,
    which are then read to their end first), else at the current end."""
    if start is not None:
        for gen in reversed(_generations(path)):  # oldest first
            try:
                if os.stat(gen).st_ino == start[0]:
                    f = open(gen, "rb")
                    f.seek(min(start[1], os.fstat(f.fileno()).st_size))
                    return f
            except FileNotFoundError:
                continue
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return None
    if start is None:
        f.seek(0, os.SEEK_END)
    return f  # the file it named is gone: from the start of the current one


def follow(path: Path, out: IO[bytes], ended: Callable[[], bool], framed: bool,
           start: Optional[Position] = None, poll_s: float = 0.25) -> None:
    f = _open_at(path, start)
    idle_after_end = 0
    while True:
        if f is not None and _emit_all(f, out, framed):
            continue
        if _rotated(path, f):
            if f is not None:
                _emit_all(f, out, framed)  # what was written just before the rotation
                f.close()
            f = open(path, "rb")
            continue
        if ended():
            idle_after_end += 1
            if idle_after_end > 2:  # a last read after the end, for lines written just before
                return
        time.sleep(poll_s)


def _emit_all(f, out: IO[bytes], framed: bool) -> bool:
    """Sends what f has past its position; True if there was anything."""
    sent = False
    while True:
        pos = f.tell()
        chunk = f.read(65536)
        if not chunk:
            return sent
        if framed:
            out.write(f"@{os.fstat(f.fileno()).st_ino} {pos} {len(chunk)}\n".encode())
        out.write(chunk)
        out.flush()
        sent = True


def _rotated(path: Path, f) -> bool:
    """The log is another file now (a new inode, or one shorter than what was read)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    return f is None or st.st_ino != os.fstat(f.fileno()).st_ino or st.st_size < f.tell()


def parse_position(text: Optional[str]) -> Optional[Position]:
    if not text:
        return None
    inode, _, offset = text.partition(":")
    return int(inode), int(offset)
