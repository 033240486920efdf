"""The laptop's cache files (hashes, hosts' manifests, early.py's remembered commands): each
write is whole or absent (temp name, rename), and one that fails only costs the next command
its shortcut. write_later writes on a thread of its own: a 10,000-file cache is a megabyte of
JSON (30 ms to write), which a launch need not wait for. The thread is not a daemon, so the
process ends only once every write is done; a reader of the same file waits for its write."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Dict

_pending: Dict[str, threading.Thread] = {}
_lock = threading.Lock()


def write_later(path: Path, doc: Any) -> None:
    """doc as JSON at path, soon; a write still pending for path goes first."""
    settle(path)
    thread = threading.Thread(target=write_now, args=(path, doc), name=f"cache {path.name}")
    with _lock:
        _pending[str(path)] = thread
    thread.start()


def settle(path: Path) -> None:
    """Waits for the write pending for path, if any (call before reading it)."""
    with _lock:
        thread = _pending.pop(str(path), None)
    if thread is not None:
        thread.join()


def write_now(path: Path, doc: Any) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written only costs the next command its shortcut
