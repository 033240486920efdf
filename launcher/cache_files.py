"""The laptop's cache files (hashes, hosts' manifests; early.py's remembered commands, read
by early.py itself before this module would load): each write is whole or absent (temp name,
rename), and one that fails only costs the next command its shortcut.

The two big ones (a 10,000-file workdir's hashes, a host's manifest of it: a megabyte each) are
packed: a header line with a checksum of its label and the body, then the body in marshal, which encodes
and decodes plain values several times faster than JSON (2 ms against 15 to write, where the
encoder holds the GIL for all of it). They are written on a thread of their own, which a
launch need not wait for; the thread is not a daemon, so the process ends only once every
write is done, and a reader of the same file waits for its write. A body that does not match
its checksum (damaged, cut, or from another marshal version) reads as absent."""

from __future__ import annotations

import hashlib
import marshal
import os
import threading
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

_pending: Dict[str, threading.Thread] = {}
_lock = threading.Lock()
_MAGIC = f"tether-cache 1 m{marshal.version}"


def write_packed_later(path: Path, doc: Any, label: str = "") -> None:
    """doc (dicts, lists, strings, numbers) packed at path, soon; label: a word read without
    the body (read_label). Writes of one path land in the order asked."""
    with _lock:
        before = _pending.get(str(path))
        thread = threading.Thread(target=_write_after, args=(before, path, doc, label), name=f"cache {path.name}")
        _pending[str(path)] = thread
        thread.start()


def _write_after(before: Optional[threading.Thread], path: Path, doc: Any, label: str) -> None:
    if before is not None:
        before.join()
    _write_packed(path, doc, label)


def read_packed(path: Path) -> Optional[Tuple[str, Any]]:
    """(label, doc) as written, or None where absent or damaged."""
    settle(path)
    try:
        data = path.read_bytes()
        head, _, body = data.partition(b"\n")
        magic, checksum, label = _header(head)
        if magic == _MAGIC and checksum == _checksum(label, body):
            return label, marshal.loads(body)
    except (OSError, ValueError, EOFError, TypeError):
        pass
    return None


def read_label(path: Path) -> Optional[str]:
    """The label of a packed file, from its header alone (the body is not read or checked)."""
    settle(path)
    try:
        with open(path, "rb") as f:
            magic, _, label = _header(f.readline(512).rstrip(b"\n"))
    except (OSError, ValueError):
        return None
    return label if magic == _MAGIC else None


def _header(line: bytes) -> Tuple[str, str, str]:
    magic, _, rest = line.decode("ascii").rpartition(" sha256=")
    checksum, _, label = rest.partition(" ")
    return magic, checksum, label


def _write_packed(path: Path, doc: Any, label: str) -> None:
    try:
        body = marshal.dumps(doc)
    except ValueError:  # a value marshal does not take: no cache, as for a disk that refuses it
        return
    write_whole(path, f"{_MAGIC} sha256={_checksum(label, body)} {label}\n".encode("ascii") + body)


def _checksum(label: str, body: bytes) -> str:
    """Of the label and the body together: a label is read alone, but trusted only with its body."""
    return hashlib.sha256(label.encode("ascii") + b"\n" + body).hexdigest()


def settle(path: Path) -> None:
    """Waits for the write pending for path, if any (call before reading it)."""
    with _lock:
        thread = _pending.pop(str(path), None)
    if thread is not None:
        thread.join()


def write_whole(path: Path, data: bytes) -> None:
    """data at path, whole or not at all (a temp name, renamed)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError:  # a cache that cannot be written only costs the next command its shortcut
        try:
            tmp.unlink()
        except OSError:
            pass
