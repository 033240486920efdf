"""Laptop -> host code sync: manifests on both ends, only changed files travel, as one tar.

What is never sent: .git/ (and other VCS folders), .env files, __pycache__, virtualenvs,
folders `tether pull` filled; then whatever .gitignore files (at any depth) and a top-level
.tetherignore exclude (launcher/ignore.py). Symlinks are not followed and not sent. --dry-run
names everything left out, with its rule.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import IO, Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

from agent.paths import Root
from agent.protocol import code_digest, code_digest_of, sha256_file

from launcher.transport.agent_client import AgentClient
from launcher.errors import RemoteError
from launcher.text import human_bytes
from launcher import cache_files
from launcher.transfer.ignore import Ignores, Rule

@dataclass(frozen=True)
class LocalFile:
    rel: str
    where: str   # its absolute path, as a string (a Path per file costs a 10,000-file scan 0.2 s)
    size: int
    mode: int
    sha256: str

    @property
    def path(self) -> Path:
        return Path(self.where)


@dataclass
class LocalTree:
    files: Dict[str, LocalFile]
    skipped_links: List[str] = field(default_factory=list)
    left_out: List[Tuple[str, Rule]] = field(default_factory=list)   # (path, the rule), topmost only
    cache_dir: Optional[Path] = None   # where the laptop keeps what it learnt of hosts' copies

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files.values())

    @cached_property
    def digest(self) -> str:
        """What the job's snapshot on the host must hash to (agent.protocol.code_digest).
        Read once the scan is done (the files do not change after it)."""
        return code_digest_of((f.rel, f.mode, f.sha256) for f in self.files.values())

    def manifest(self) -> Dict[str, dict]:
        """As the host's manifest of the same files would be."""
        return {rel: {"size": f.size, "mode": f.mode, "sha256": f.sha256} for rel, f in self.files.items()}


@dataclass(frozen=True)
class SyncPlan:
    send: List[LocalFile]
    delete: List[str]
    unchanged: int
    new: frozenset = frozenset()   # the paths in send that the host's manifest does not have

    @property
    def send_bytes(self) -> int:
        return sum(f.size for f in self.send)


RACY_S = 2.0  # a file changed this close to when its hash was cached is hashed again


def _cached_digest(p: str, st: os.stat_result, hit: object, now: float) -> Tuple[list, str]:
    """The file's sha256, from the cache when nothing about it changed. The key holds ctime,
    which tools that keep mtimes (cp -p, rsync -t, touch -d) cannot set back, and the inode;
    an entry cached within RACY_S of the file's last change is not trusted (as git does)."""
    size, mtime_ns, ino, ctime_ns = st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns
    if (type(hit) is list and len(hit) == 6 and hit[0] == size and hit[1] == mtime_ns and hit[2] == ino
            and hit[3] == ctime_ns and hit[5] - (mtime_ns if mtime_ns > ctime_ns else ctime_ns) / 1e9 > RACY_S):
        return hit, hit[4]   # (written out: this runs once a file, 10,000 times a launch)
    digest = sha256_file(p)
    return [size, mtime_ns, ino, ctime_ns, digest, now], digest


def scan(workdir: Path, hash_cache: Path) -> LocalTree:
    """Every file that would be synced, with its sha256 (cached, see _cached_digest), and what
    is left out with the rule that leaves it out."""
    kept = cache_files.read_packed(hash_cache)
    cache = kept[1] if kept is not None and isinstance(kept[1], dict) else {}
    now = time.time()
    tree = LocalTree({}, cache_dir=hash_cache.parent.parent)
    new_cache: Dict[str, list] = {}
    ignores = Ignores(workdir)
    _scan_folder(workdir, "", ignores, tree, cache, new_cache, now)
    if new_cache == cache:  # nothing was hashed: the kept file is right as it is
        return tree
    cache_files.write_packed_later(hash_cache, new_cache)
    hash_cache.with_suffix(".json").unlink(missing_ok=True)  # this cache as JSON, before it was packed
    return tree


class TreeScan:
    """The workdir's scan, done once, when first asked: a launch asks for it once its host's
    side has started, so the host's start and the laptop's scan overlap."""

    def __init__(self, workdir: Path, cache_dir: Path) -> None:
        self.workdir, self.cache_dir = workdir, cache_dir
        self._tree: Optional[LocalTree] = None

    def __call__(self) -> LocalTree:
        if self._tree is None:
            self._tree = scan(self.workdir, hash_cache_for(self.cache_dir, self.workdir))
        return self._tree


def _scan_folder(workdir: Path, rel_here: str, ignores: Ignores, tree: LocalTree, cache: dict,
                 new_cache: Dict[str, list], now: float) -> None:
    """One folder, then its subfolders in name order (top-down, as the ignore files nest):
    one scandir each, the file types from it, one lstat per file kept."""
    ignores.enter(rel_here)
    try:
        entries = sorted(os.scandir(workdir / rel_here if rel_here else workdir), key=lambda e: e.name)
    except OSError:
        return
    folders = []
    for e in entries:
        rel = f"{rel_here}/{e.name}" if rel_here else e.name
        if e.is_symlink():
            tree.skipped_links.append(rel)
        elif e.is_dir(follow_symlinks=False):
            rule = ignores.why(rel, True)
            if rule is not None:
                tree.left_out.append((rel + "/", rule))
            else:
                folders.append(rel)
        elif e.is_file(follow_symlinks=False):
            rule = ignores.why(rel, False)
            if rule is not None:
                tree.left_out.append((rel, rule))
                continue
            st = e.stat(follow_symlinks=False)
            new_cache[rel], digest = _cached_digest(e.path, st, cache.get(rel), now)
            tree.files[rel] = LocalFile(rel, e.path, st.st_size, st.st_mode & 0o777, digest)
    for rel in folders:
        _scan_folder(workdir, rel, ignores, tree, cache, new_cache, now)


def hash_cache_for(cache_dir: Path, workdir: Path) -> Path:
    key = hashlib.sha256(str(workdir.resolve()).encode()).hexdigest()[:16]
    return cache_dir / "hashes" / f"{key}.cache"


class HostManifest:
    """What the laptop keeps of a host's manifest of a project (per host, root and project), so
    the host sends only its digest when that is the laptop's own tree's (nothing changed) or
    the one kept here (after an edit: the tree last synced there). A launch moves the whole
    manifest only when the host's copy is one this laptop never saw."""

    def __init__(self, tree: Optional[LocalTree], host_key: str, root: str, project: str,
                 cache_dir: Optional[Path] = None) -> None:
        """tree: the workdir's scan, or None until it is done (scanned); then cache_dir."""
        self._tree = tree
        cache_dir = tree.cache_dir if tree is not None else cache_dir
        self.cache: Optional[Path] = None
        if cache_dir is not None:
            key = hashlib.sha256(f"{host_key}\0{root}\0{project}".encode()).hexdigest()[:24]
            self.cache = cache_dir / "host-manifests" / f"{key}.cache"
        # The kept manifest's digest only: its megabyte of files is read when an answer names it.
        self.last_digest = _read_digest(self.cache)
        self._last_files: Optional[Dict[str, dict]] = None

    @property
    def tree(self) -> LocalTree:
        assert self._tree is not None, "the workdir is not scanned yet"
        return self._tree

    def scanned(self, tree: LocalTree) -> None:
        self._tree = tree

    def known(self) -> List[str]:
        """The digests the host may answer with alone; before the scan, only the kept one."""
        mine = [self._tree.digest] if self._tree is not None else []
        return mine + ([self.last_digest] if self.last_digest is not None else [])

    def files(self, answer: Any) -> Dict[str, dict]:
        """The host's manifest from its answer ({"digest", "files"?}), checked."""
        digest = answer.get("digest") if isinstance(answer, dict) else None
        if not isinstance(digest, str):
            raise RemoteError("the host's manifest answer has no digest")
        files = answer.get("files")
        if files is None:
            if digest == self.tree.digest:
                return self.tree.manifest()
            if self.last_digest is not None and digest == self.last_digest:
                return self._kept_files()
            raise RemoteError("the host's manifest answer names a digest the laptop never sent")
        if not isinstance(files, dict) or not all(isinstance(v, dict) and isinstance(v.get("sha256"), str)
                                                  and isinstance(v.get("mode"), int) for v in files.values()):
            raise RemoteError("the host's manifest is not {path: {mode, sha256, size}}")
        if code_digest(files) == digest:
            self._keep(digest, files)
        return files

    def remember_synced(self) -> None:
        """After a sync the host's copy is the tree: kept, so the next launch after an edit
        moves the host's digest instead of its manifest."""
        if self.last_digest != self.tree.digest:
            self._keep(self.tree.digest, self.tree.manifest())

    def _keep(self, digest: str, files: Dict[str, dict]) -> None:
        if self.cache is None:
            return
        cache_files.write_packed_later(self.cache, files, label=digest)  # the digest, read alone: _read_digest
        self.cache.with_suffix(".json").unlink(missing_ok=True)  # this copy as JSON, before it was packed
        self.last_digest, self._last_files = digest, files

    def _kept_files(self) -> Dict[str, dict]:
        """The kept manifest whose digest the host answered with, read now and checked."""
        if self._last_files is None:
            kept = _read_manifest(self.cache)
            if kept is None or kept[0] != self.last_digest:
                if self.cache is not None:
                    self.cache.unlink(missing_ok=True)  # the next launch asks for the whole manifest
                raise RemoteError("this laptop's copy of the host's manifest is damaged", "launch again")
            self._last_files = kept[1]
        return self._last_files


def remote_manifest(client: Any, root: str, project: str, kept: HostManifest) -> Dict[str, dict]:
    """The host's manifest of the project's code, asked with `agent manifest` (a dry run)."""
    return kept.files(client.call("manifest", root, project, *[a for d in kept.known() for a in ("--known", d)]))


def _read_digest(cache: Optional[Path]) -> Optional[str]:
    """The digest a kept manifest is labelled with, without reading its files."""
    digest = cache_files.read_label(cache) if cache is not None else None
    return digest if digest is not None and re.fullmatch(r"[0-9a-f]{64}", digest) else None


def _read_manifest(cache: Optional[Path]) -> Optional[Tuple[str, Dict[str, dict]]]:
    """The kept manifest, whole as written (its checksum holds), or None."""
    kept = cache_files.read_packed(cache) if cache is not None else None
    if kept is not None and isinstance(kept[1], dict):
        return kept
    return None


def plan(local: LocalTree, remote: Dict[str, dict]) -> SyncPlan:
    send = [f for rel, f in sorted(local.files.items())
            if rel not in remote or remote[rel]["sha256"] != f.sha256 or remote[rel]["mode"] != f.mode]
    delete = sorted(rel for rel in remote if rel not in local.files)
    return SyncPlan(send=send, delete=delete, unchanged=len(local.files) - len(send),
                    new=frozenset(f.rel for f in send if f.rel not in remote))


class _Counting(io.RawIOBase):
    """Wraps a file so a progress callback sees every byte read."""

    def __init__(self, f, on_bytes: Callable[[int], None]) -> None:
        self.f, self.on_bytes = f, on_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self.f.read(len(b))
        n = len(data)
        b[:n] = data
        self.on_bytes(n)
        return n


def push(client: AgentClient, root: str, project: str, the_plan: SyncPlan, workdir: Path,
         environ: Mapping[str, str], on_bytes: Callable[[int], None] = lambda n: None) -> dict:
    """The changed files through rsync where both ends have it, else (or if it fails) as one
    tar into `agent receive` on the host, which also deletes what is gone. Call it holding
    the project's lock (the launch session holds it).
    Returns {"via": "rsync" | "tar", "rsync_problem": why rsync was not used, or None}."""
    from launcher.transfer import rsync as rsync_send

    to_tar, via, problem = the_plan.send, "tar", None
    if the_plan.send and rsync_send.usable(client.host, environ):
        places = Root(Path(root))
        problem = rsync_send.send(client.host, workdir, str(places.code(project)),
                                  str(places.code_rsync_temp(project)), the_plan.send, on_bytes, new=the_plan.new)
        if problem is None:
            to_tar, via = [], "rsync"
    if to_tar or the_plan.delete:
        _push_tar(client, root, project, to_tar, the_plan.delete, on_bytes)
    return {"via": via, "rsync_problem": problem}


def _push_tar(client: AgentClient, root: str, project: str, send: List[LocalFile], delete: List[str],
              on_bytes: Callable[[int], None]) -> dict:
    """Streams the files as one tar into `agent receive` on the host."""
    stream = client.stream("receive", root, project)
    try:
        write_delta(stream.stdin, send, delete, on_bytes)
        stream.close_stdin()
    except (BrokenPipeError, OSError):
        pass  # the host stopped reading: its exit status and stderr say why
    out = stream.stdout.read()
    rc = stream.wait()
    if rc != 0:
        raise RemoteError(f"sync failed on the host: {stream.stderr_text().strip()[-300:]}")
    return json.loads(out)


def write_delta(out: IO[bytes], send: List[LocalFile], delete: List[str],
                on_bytes: Callable[[int], None] = lambda n: None) -> None:
    """A change as `agent receive` (and the launch session's put) reads one: a JSON line
    naming what to delete, then a tar of the files to write."""
    out.write(json.dumps({"delete": delete}).encode() + b"\n")
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for f in send:
            info = tarfile.TarInfo(f.rel)
            info.size, info.mode = f.size, f.mode
            info.mtime = f.path.stat().st_mtime
            with open(f.path, "rb") as src:
                tar.addfile(info, _Counting(src, on_bytes))


# A change this small goes on the launch session's own channel (its put): no second ssh
# session and no rsync start, which cost a one-file edit more than the file.
SMALL_BYTES = 4 * 1024 * 1024
SMALL_FILES = 256


def is_small(the_plan: SyncPlan) -> bool:
    return len(the_plan.send) + len(the_plan.delete) <= SMALL_FILES and the_plan.send_bytes <= SMALL_BYTES


def iter_lines(the_plan: SyncPlan) -> Iterator[str]:
    for f in the_plan.send:
        yield f"  send   {f.rel}  ({human_bytes(f.size)})"
    for rel in the_plan.delete:
        yield f"  delete {rel}"
