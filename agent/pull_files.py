"""A pull's host side: `pull-files JOB`, one session on stdin and stdout that lists the files
asked for, then sends those the laptop still wants, framed (session below). A pull waits for
it, so __main__.py runs it before argparse and the agent's other modules load: this module
loads the standard library's light parts only (hashing.py, paths.py).

Runtimes before it had two commands for this, `list-files` and `read-files`; a launcher falls
back to them on such a runtime (launcher/transfer/host_files.py), so their wire stays what it was:
list_tree's answer and send_files's frames are the same here.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from pathlib import Path
from typing import IO, List

from .hashing import BackgroundHash, sha256_file
from .paths import is_inside, safe_relpath


def main(args: List[str]) -> int:
    """`pull-files JOB` (its requests on stdin), as verbs.py ran it."""
    try:
        session(Path(args[1]), sys.stdin.buffer, sys.stdout.buffer)
    except BrokenPipeError:  # the laptop went away (Ctrl-C on `tether pull`)
        return 0
    except (ValueError, OSError, KeyError, TypeError, RecursionError) as exc:
        print(str(exc)[:500] or type(exc).__name__, file=sys.stderr)  # the launcher says what was being done
        return 2
    return 0


def session(top: Path, requests: IO[bytes], out: IO[bytes]) -> None:
    """Requests are JSON lines. {"list": [PATH, ...], "hashes": bool} is answered by one JSON
    line, list_tree's; {"read": [{path, offset[, sha256: true]}, ...]} by send_files's frames,
    and ends the session, as the end of stdin does. One command for the whole pull: the host's
    Python starts once, and the laptop's listing is a line on a session already open."""
    for line in requests:
        request = json.loads(line)
        if not isinstance(request, dict) or not ("read" in request or "list" in request):
            raise ValueError(f"a pull request is a JSON object with 'list' or 'read', not {line[:80]!r}")
        if "read" in request:
            send_files(top, _objects(request["read"]), out)
            return
        wanted = request["list"]
        if not (isinstance(wanted, list) and all(isinstance(w, str) for w in wanted)):
            raise ValueError("a pull's list request names its paths as strings")
        out.write(json.dumps(list_tree(top, wanted, hashes=request.get("hashes") is True)).encode() + b"\n")
        out.flush()


def _objects(requests: object) -> List[dict]:
    if not (isinstance(requests, list) and all(isinstance(r, dict) for r in requests)):
        raise ValueError("a pull's read request is a list of {path, offset} objects")
    return requests


def list_tree(top: Path, wanted: List[str], hashes: bool = True) -> dict:
    """Files under top named by wanted (files or folders), with sizes and (hashes) sha256.
    Without hashes a pull asks send_files for each file's sha256 after its bytes instead:
    one read of the file on the host, not two.

    Symlinks are never followed; they are listed as refused so the user hears about them.
    """
    files: List[dict] = []
    refused: List[dict] = []
    seen = set()
    for name in wanted:
        try:
            rel = safe_relpath(name.rstrip("/"))
        except ValueError as exc:
            refused.append({"path": name, "problem": str(exc)})
            continue
        start = top / rel
        if start.is_symlink():
            refused.append({"path": rel, "problem": "is a symlink"})
            continue
        if start.is_file():
            candidates = [start]
        elif start.is_dir():
            candidates = []
            for dirpath, dirnames, filenames in os.walk(start):
                for n in sorted(dirnames + filenames):
                    p = Path(dirpath) / n
                    if p.is_symlink():
                        refused.append({"path": p.relative_to(top).as_posix(), "problem": "is a symlink"})
                    elif p.is_file():
                        candidates.append(p)
        else:
            continue
        for p in candidates:
            relp = p.relative_to(top).as_posix()
            if relp in seen or not is_inside(p, top):
                continue
            seen.add(relp)
            item = {"path": relp, "size": p.stat().st_size}
            if hashes:
                item["sha256"] = sha256_file(p)
            files.append(item)
    return {"files": files, "refused": refused}


def _hash_prefix(f: IO[bytes], offset: int):
    """sha256 of the file's first offset bytes (a resumed pull already has them), left at offset."""
    digest = hashlib.sha256()
    f.seek(0)
    left = offset
    while left:
        block = f.read(min(left, 1 << 20))
        if not block:
            break
        digest.update(block)
        left -= len(block)
    f.seek(offset)
    return digest


def _open_inside(top: Path, rel: str) -> int:
    """rel under top, opened to read: a regular file, and inside top as what was opened (a
    folder on its way swapped for a symlink after the listing is caught; a fifo does not block)."""
    fd = os.open(top / rel, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_NOFOLLOW", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a regular file")
        opened = f"/proc/self/fd/{fd}"  # Linux: the path of what was opened; elsewhere, the path resolved now
        real = os.readlink(opened) if os.path.islink(opened) else os.path.realpath(top / rel)
        real_top = os.path.realpath(top)
        if os.path.commonpath([real, real_top]) != real_top:
            raise ValueError("not inside the job's folder (a symlink on its way)")
        return fd
    except BaseException:
        os.close(fd)
        raise


def send_files(top: Path, requests: List[dict], out: IO[bytes]) -> None:
    """For each {path, offset[, sha256: true]}: a JSON header line, then exactly `length` raw
    bytes; asked for, a line {"sha256": ...} of the whole file (hashed while it was read)."""
    for req in requests:
        try:
            rel = safe_relpath(req["path"])
            offset = req.get("offset", 0)
            if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
                raise ValueError(f"offset {offset!r:.40} is not a whole number >= 0")
            with os.fdopen(_open_inside(top, rel), "rb") as f:
                size = os.fstat(f.fileno()).st_size
                offset = min(offset, size)
                f.seek(offset)
                length = size - offset
                out.write(json.dumps({"path": rel, "offset": offset, "length": length}).encode() + b"\n")
                digest = BackgroundHash(_hash_prefix(f, offset)) if req.get("sha256") is True else None
                left = length
                while left:
                    block = f.read(min(left, 1 << 20))
                    if not block:  # the file shrank under us: pad so the frame stays whole
                        block = b"\0" * left
                    out.write(block)
                    if digest is not None:
                        digest.update(block)
                    left -= len(block)
                if digest is not None:
                    out.write(json.dumps({"sha256": digest.hexdigest()}).encode() + b"\n")
        except (OSError, ValueError) as exc:
            out.write(json.dumps({"path": req.get("path"), "error": str(exc)}).encode() + b"\n")
    out.flush()
