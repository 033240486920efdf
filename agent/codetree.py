"""The host's side of sync: its manifest, applying a delta, and per-job snapshots."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tarfile
import time
from pathlib import Path
from typing import IO, Dict, Iterable, List, Optional, Tuple

from .files import read_json_object, write_json_atomic
from .paths import is_inside as is_inside, remove_inside, safe_relpath as safe_relpath
from .protocol import code_digest, sha256_file

TEMP_SUFFIX = ".tether-tmp"


def walk_files(top: Path) -> Iterable[Path]:
    """Regular files under top, not following symlinks."""
    for rel, _ in scan_files(top):
        yield top / rel


def scan_files(top: Path, under: str = "") -> List[Tuple[str, os.stat_result]]:
    """(relative path, stat) of every regular file under top, sorted by path, symlinks not
    followed: one scandir per folder (a 10,000-file tree is read in a few tens of ms)."""
    out: List[Tuple[str, os.stat_result]] = []
    try:
        entries = sorted(os.scandir(os.path.join(top, under) if under else top), key=lambda e: e.name)
    except OSError:  # gone, or unreadable: skipped, as os.walk does
        return out
    for e in entries:
        rel = f"{under}/{e.name}" if under else e.name
        if e.is_dir(follow_symlinks=False):
            out.extend(scan_files(top, rel))
        elif e.is_file(follow_symlinks=False):
            out.append((rel, e.stat(follow_symlinks=False)))
    return out


RACY_S = 2.0  # a file written this close to when its hash was cached may have changed unseen


def manifest(code_dir: Path, cache_path: Path,
             entries: Optional[List[Tuple[str, os.stat_result]]] = None) -> Dict[str, dict]:
    """path -> {size, mode, sha256}; hashes cached by (inode, size, mtime_ns) across calls.
    Every file tether writes here lands as a new inode (temp name, then rename), so a changed
    file is never hidden by a stale hash, even with its size and mtime kept; a file modified
    within RACY_S of when it was hashed is hashed again (as git does with racy entries)."""
    cache, _ = read_json_object(cache_path)
    cache = cache or {}
    now = time.time()
    out: Dict[str, dict] = {}
    new_cache: Dict[str, list] = {}
    for rel, st in scan_files(code_dir) if entries is None else entries:
        key = [st.st_ino, st.st_size, st.st_mtime_ns]
        hit = cache.get(rel)
        if isinstance(hit, list) and len(hit) == 5 and hit[:3] == key and hit[4] - st.st_mtime > RACY_S:
            new_cache[rel] = hit
        else:
            new_cache[rel] = key + [sha256_file(code_dir / rel), now]
        out[rel] = {"size": st.st_size, "mode": st.st_mode & 0o777, "sha256": new_cache[rel][3]}
    if new_cache != cache:  # rewritten only when something changed (1 MB for 10,000 files)
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(cache_path, new_cache)
    return out


def manifest_unless(code_dir: Path, cache_path: Path, known: List[str],
                    entries: Optional[List[Tuple[str, os.stat_result]]] = None) -> dict:
    """{"digest": d, "files": manifest} — without "files" when d is one of the digests the
    laptop says it already knows the manifest of (its own tree, the host's last manifest):
    an unchanged launch then moves a line, not a megabyte."""
    return manifest_answer(manifest(code_dir, cache_path, entries), known)


def manifest_answer(files: Dict[str, dict], known: List[str]) -> dict:
    """{"digest": d}, with "files" only when d is none of the digests the laptop knows."""
    digest = code_digest(files)
    return {"digest": digest} if digest in known else {"digest": digest, "files": files}


def apply_delta(code_dir: Path, stream: IO[bytes]) -> dict:
    """stdin: one JSON line {"delete": [paths]}, then a tar stream of the changed files.

    Every file lands under a temp name and is renamed into place (a new inode), so the
    hard-linked snapshots of running jobs keep the bytes they started with. What is deleted
    goes first (and the folders it empties): a file that became a folder of the same name, or
    a folder that became a file, then lands as rsync lands it.
    """
    header = json.loads(stream.readline() or b"{}")
    code_dir.mkdir(parents=True, exist_ok=True)
    deleted: List[str] = []
    for name in header.get("delete", []):
        rel = safe_relpath(name)
        p = code_dir / rel
        if (p.is_file() or p.is_symlink()) and is_inside(p.parent, code_dir):
            remove_inside(p, code_dir)
            deleted.append(rel)
    if deleted:
        _prune_empty_dirs(code_dir)  # a walk of the whole tree: only when a delete may have emptied one
    received: List[str] = []
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            rel = safe_relpath(member.name)
            dest = code_dir / rel
            if not is_inside(dest.parent, code_dir):  # before any mkdir: a symlinked folder is not followed out
                raise ValueError(f"refusing {rel!r}: it leaves the code folder")
            lexical = os.path.join(os.path.realpath(code_dir), os.path.dirname(rel)).rstrip("/")
            if os.path.realpath(dest.parent) != lexical:
                # inside, through a symlinked folder: it would land under another name than it
                # is sent (and hashed, by a put) as, and the job's snapshot follows no symlink
                raise ValueError(f"refusing {rel!r}: a folder on its way is a symlink on the host")
            if member.isdir():
                continue  # a folder is made for the files in it (an empty one was pruned at once)
            if not member.isfile():
                raise ValueError(f"refusing {rel!r}: only regular files are synced")
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
            src = tar.extractfile(member)
            assert src is not None
            with open(tmp, "wb") as f:
                shutil.copyfileobj(src, f, 1 << 20)
            os.chmod(tmp, member.mode & 0o777)
            os.utime(tmp, (member.mtime, member.mtime))
            os.replace(tmp, dest)
            received.append(rel)
    return {"received": len(received), "deleted": len(deleted), "received_names": received,
            "deleted_names": deleted}


def without_temp_files(code_dir: Path, entries: List[Tuple[str, os.stat_result]]) -> List[Tuple[str, os.stat_result]]:
    """Removes the temp files of a sync that was killed half-way from code_dir, given its
    scan_files entries; the others. Call it only while holding the project's lock: then no
    sync is writing any."""
    kept = []
    for rel, st in entries:
        name = rel.rsplit("/", 1)[-1]
        if name.startswith(".") and name.endswith(TEMP_SUFFIX):
            remove_inside(code_dir / rel, code_dir)
        else:
            kept.append((rel, st))
    return kept


def _prune_empty_dirs(top: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(top, topdown=False):
        p = Path(dirpath)
        if p != top and not any(p.iterdir()):
            p.rmdir()


def snapshot(code_dir: Path, dest: Path) -> int:
    """dest mirrors code_dir's regular files with hard links (copies where links are not
    possible); symlinks are not followed. Plain strings and os.walk: a launch waits on this,
    and a 10,000-file tree's Path objects cost more than its links."""
    count = 0
    top, out_top = str(code_dir), str(dest)
    os.makedirs(out_top, exist_ok=True)
    for folder, dirs, names in os.walk(top):  # os.walk does not follow symlinked folders
        rel = os.path.relpath(folder, top)
        out = out_top if rel == "." else os.path.join(out_top, rel)
        if rel != ".":
            os.mkdir(out)
        for name in names:
            src = os.path.join(folder, name)
            if os.path.islink(src) or not os.path.isfile(src):
                continue
            try:
                os.link(src, os.path.join(out, name))
            except OSError:
                shutil.copy2(src, os.path.join(out, name))
            count += 1
    return count
