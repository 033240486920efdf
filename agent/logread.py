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
import select
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


def tail_at(path: Path, lines: int) -> Tuple[bytes, Optional[Position], int]:
    """The file's last `lines` lines exactly as they are in it, where they start, and the
    place right after them (inode, offset): a follower goes on from there, so nothing
    written meanwhile is skipped, and a reconnect during the tail resumes inside it."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return b"", None, 0
    with f:
        inode = os.fstat(f.fileno()).st_ino
        size = os.fstat(f.fileno()).st_size
        begin = max(0, size - max(lines, 1) * 400 - 65536)
        f.seek(begin)
        data = f.read(size - begin)
    if lines <= 0:
        return b"", (inode, size), size
    cut = len(data)
    for _ in range(lines + (1 if data.endswith(b"\n") else 0)):
        cut = data.rfind(b"\n", 0, cut)
        if cut < 0:
            break
    start = cut + 1 if cut >= 0 else 0
    return data[start:], (inode, size), begin + start


def _generations(path: Path) -> List[Path]:
    """The log and its rotated files, newest first (workload.log, .1, .2, ...)."""
    return [path] + [path.with_name(f"{path.name}.{i}") for i in range(1, 10)]


class _Followed:
    """The file being followed, unbuffered (one read per chunk), with its inode and the offset
    read up to, kept here rather than asked of the kernel on every chunk."""

    def __init__(self, path: Path, start: Optional[int] = None) -> None:
        """From start (bounded by the file's size), else from the current end."""
        self.f = open(path, "rb", buffering=0)
        st = os.fstat(self.f.fileno())
        self.inode = st.st_ino
        self.pos = self.f.seek(st.st_size if start is None else min(start, st.st_size))

    def read(self) -> bytes:
        chunk = self.f.read(65536)
        self.pos += len(chunk)
        return chunk

    def close(self) -> None:
        self.f.close()


def _open_at(path: Path, start: Optional[Position]) -> Optional[_Followed]:
    """The file to follow from, positioned: at start (found by inode among the rotated files,
    which are then read to their end first), else at the current end."""
    if start is not None:
        for gen in reversed(_generations(path)):  # oldest first
            try:
                if os.stat(gen).st_ino == start[0]:
                    f = _Followed(gen, start[1])
                    if f.inode == start[0]:  # still that file once open (not rotated in between)
                        return f
                    f.close()
            except FileNotFoundError:
                continue
    try:
        return _Followed(path, None if start is None else 0)  # the file it named is gone: the current one, whole
    except FileNotFoundError:
        return None


class _Writes:
    """Wakes as soon as something in the log's folder is written (Linux inotify through libc,
    as `tail -F` does), or after timeout; where inotify cannot be had, it just sleeps."""

    _MASK = 0x2 | 0x8 | 0x80 | 0x100   # IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE

    def __init__(self, folder: Path) -> None:
        self.fd = -1
        try:
            import ctypes
            import ctypes.util

            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
            if fd >= 0 and libc.inotify_add_watch(fd, os.fsencode(str(folder)), self._MASK) >= 0:
                self.fd = fd
            elif fd >= 0:
                os.close(fd)
        except (OSError, AttributeError):
            self.fd = -1

    def wait(self, timeout: float) -> None:
        if self.fd < 0:
            time.sleep(timeout)
            return
        if select.select([self.fd], [], [], timeout)[0]:
            try:
                os.read(self.fd, 65536)  # the events themselves do not matter: the file is read
            except BlockingIOError:
                pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def follow(path: Path, out: IO[bytes], ended: Callable[[], bool], framed: bool,
           start: Optional[Position] = None, poll_s: float = 0.25) -> None:
    """Until the job has ended: each write sent within milliseconds (woken by inotify), or
    within poll_s where there is none; ended() is asked every poll_s at most."""
    writes = _Writes(path.parent)
    try:
        _follow(path, out, ended, framed, start, poll_s, writes)
    finally:
        writes.close()


def _follow(path: Path, out: IO[bytes], ended: Callable[[], bool], framed: bool,
            start: Optional[Position], poll_s: float, writes: "_Writes") -> None:
    f = _open_at(path, start)
    idle_after_end = 0
    while True:
        if f is not None and _emit_all(f, out, framed):
            continue
        if _rotated(path, f):
            if f is not None:
                _emit_all(f, out, framed)  # what was written just before the rotation
                f.close()
            try:
                f = _Followed(path, 0)  # the new file, from its start
            except FileNotFoundError:
                f = None
            continue
        if ended():
            idle_after_end += 1
            if idle_after_end > 2:  # a last read after the end, for lines written just before
                return
        writes.wait(poll_s)


def _emit_all(f: _Followed, out: IO[bytes], framed: bool) -> bool:
    """Sends what f has past its position, each chunk in one write; True if there was any."""
    sent = False
    while True:
        at = f.pos
        chunk = f.read()
        if not chunk:
            return sent
        out.write(b"@%d %d %d\n%s" % (f.inode, at, len(chunk), chunk) if framed else chunk)
        out.flush()
        sent = True


def _rotated(path: Path, f: Optional[_Followed]) -> bool:
    """The log is another file now (a new inode, or one shorter than what was read)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    return f is None or st.st_ino != f.inode or st.st_size < f.pos


def parse_position(text: Optional[str]) -> Optional[Position]:
    if not text:
        return None
    inode, _, offset = text.partition(":")
    return int(inode), int(offset)
