"""Host -> laptop: artifacts listed with sizes and sha256, partial files resumed by offset,
every file verified and renamed into place, nothing allowed outside the destination."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, List

from rich.console import Console

from agent.protocol import BackgroundHash, BackupInfo, sha256_file

from launcher.transport.agent_client import AgentClient
from launcher.errors import NoBackupError, NotFoundError, RemoteError, UnsafePathError
from launcher.transfer import PULLED_MARKER
from launcher.transfer.host_files import HostFiles, StallWatch, json_line
from launcher.transfer.progress_bar import TransferProgress
from launcher.text import plain

PART_SUFFIX = ".tether-part"
MAX_LINE = 1 << 16    # a header or trailer line from the host, at most
MAX_REFUSED = 1000        # refusals kept from one listing (the rest counted)
STALL_S = 300.0     # the files' bytes stopping this long ends a pull (they are counted a MiB block at a
                    # time: a link under 3.5 KB/s counts as stopped); more where a file resumes, as
PREFIX_RATE = 25e6  # its prefix is hashed first on the host, then on the laptop, sending nothing: at
                    # 50 MB/s a disk each (40 ms a MB together) on top


def sha256_of_part(part: Path):
    """The running sha256 of a partial file a pull resumes (its bytes are not sent again)."""
    h = hashlib.sha256()
    with open(part, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h


@dataclass
class PullResult:
    dest: Path
    pulled: List[str] = field(default_factory=list)
    unchanged: List[str] = field(default_factory=list)
    refused: List[str] = field(default_factory=list)
    bytes: int = 0


def safe_destination(dest: Path, rel: str) -> Path:
    """Where rel lands under dest; UnsafePathError if it would land anywhere else."""
    p = PurePosixPath(rel)
    if (not rel or p.is_absolute() or ".." in p.parts or "\\" in rel or "\x00" in rel
            or rel.startswith("~")):
        raise UnsafePathError(f"refusing to pull {rel!r}: it would leave {dest}",
                              "the host listed an unsafe path; nothing was written for it")
    target = dest.joinpath(*p.parts)
    real_dest = os.path.realpath(dest)
    real_parent = os.path.realpath(target.parent)
    if os.path.commonpath([real_dest, real_parent]) != real_dest or target.is_symlink():
        raise UnsafePathError(f"refusing to pull {rel!r}: a symlink under {dest} points elsewhere",
                              "remove the symlink from the destination folder")
    return target


def pull(client: AgentClient, job_dir: str, paths: List[str], dest: Path, console: Console,
         durable: bool = True) -> PullResult:
    """durable: on disk before it returns (a rented host may be destroyed once its results are
    pulled); a host of your own keeps them, and its pull is not made to wait for the disk."""
    dest.mkdir(parents=True, exist_ok=True)
    # Marks the folder as pulled results: a later launch from here does not send them back up.
    (dest / PULLED_MARKER).touch()
    result = PullResult(dest=dest)
    host = HostFiles(client, job_dir)
    try:
        files = _checked(host.listing(paths, hashes=False), paths, result)
        # Only a file the laptop already has at the same size may be unchanged: only those are
        # hashed on the host beforehand; the others' sha256 comes after their bytes.
        maybe_same = [f["path"] for f in files if "sha256" not in f and _same_size(dest, f)]
        if maybe_same:
            hashed = {f["path"]: f for f in _checked(host.listing(maybe_same, hashes=True), maybe_same,
                                                     PullResult(dest), hashes=True)}
            files = [hashed.get(f["path"], f) for f in files]
        wanted = _wanted(files, dest, result)
        if not wanted:
            return result
        total = sum(w["size"] - w["offset"] for w in wanted)
        progress = TransferProgress(console, "pull", total)
        stall_s = STALL_S + max(w["offset"] for w in wanted) / PREFIX_RATE
        stall = StallWatch(stall_s, host.kill)
        try:
            frames = host.read([{"path": w["path"], "offset": w["offset"], "sha256": "sha256" not in w} for w in wanted])
            for w in wanted:
                _receive_one(frames, w, stall.fed(progress))
                result.pulled.append(w["path"])
                result.bytes += w["size"] - w["offset"]
        except RemoteError:
            if stall.fired:
                raise RemoteError(f"pull: the host sent nothing for {stall_s:.0f}s; the pull was ended",
                                  "check the host (tether status); run pull again: it resumes where it stopped") from None
            raise
        finally:
            stall.stop()
            progress.close()
    except BaseException:
        host.kill()  # unread frames would otherwise keep the host writing
        raise
    finally:
        host.close()
    # A pull may let autodown destroy the host: what it wrote is on disk before it returns.
    # Once for all the files (one fsync each costs a journal commit: 50 files, a second).
    if durable:
        os.sync()
    return result


def _wanted(files: List[dict], dest: Path, result: PullResult) -> List[dict]:
    """The files to send, each with where it lands and the offset its partial file resumes at;
    those the laptop has already (same sha256) go to result.unchanged."""
    wanted = []
    for f in files:
        target = safe_destination(dest, f["path"])  # raises: a host listing ../ is not trusted
        if "sha256" in f and target.is_file() and target.stat().st_size == f["size"] \
                and sha256_file(target) == f["sha256"]:
            result.unchanged.append(f["path"])
            continue
        part = target.with_name(target.name + PART_SUFFIX)
        offset = part.stat().st_size if part.is_file() else 0
        if offset > f["size"]:
            part.unlink()
            offset = 0
        wanted.append({**f, "offset": offset, "target": target, "part": part})
    return wanted


def _frame_line(src: IO[bytes], what: str) -> dict:
    """A header or trailer line of the host's frames, as a JSON object."""
    doc = json_line(src.readline(MAX_LINE) or b"{}", f"pull: the host's {what}")
    if not isinstance(doc, dict):
        raise RemoteError(f"pull: the host's {what} is not a JSON object")
    return doc


def _checked(listing: object, paths: List[str], result: PullResult, hashes: bool = False) -> List[dict]:
    """The host's list of files to pull, checked (a path, a size, a sha256 if asked for);
    what it refused, and what is malformed, goes to result.refused (the first MAX_REFUSED)."""
    entries = listing.get("files") or [] if isinstance(listing, dict) else None
    refusals = listing.get("refused") or [] if isinstance(listing, dict) else None
    if not isinstance(entries, list) or not isinstance(refusals, list):
        raise RemoteError("the host's list of files to pull is not {files: [...], refused: [...]}")
    refused: List[str] = []
    for item in refusals:
        if isinstance(item, dict):
            refused.append(f"{str(item.get('path'))[:300]} ({str(item.get('problem'))[:300]})")
    files = []
    for f in entries:
        ok = isinstance(f, dict) and isinstance(f.get("path"), str) and isinstance(f.get("size"), int) \
            and not isinstance(f.get("size"), bool) and f["size"] >= 0
        if ok and not _asked_for(f["path"], paths):
            refused.append(f"{str(f['path'])[:300]} (not asked for)")
            continue
        if ok and "sha256" in f and not (isinstance(f["sha256"], str) and re.fullmatch(r"[0-9a-f]{64}", f["sha256"])):
            ok = False
        if not ok:
            refused.append(f"{str(f)[:200]} (not a file entry)")
            continue
        if hashes and "sha256" not in f:
            raise RemoteError(f"the host listed {f['path']!r} without its sha256")
        files.append({k: f[k] for k in ("path", "size", "sha256") if k in f})
    result.refused += refused[:MAX_REFUSED]
    if len(refused) > MAX_REFUSED:
        result.refused.append(f"... and {len(refused) - MAX_REFUSED} more")
    return files


def _asked_for(path: str, paths: List[str]) -> bool:
    """path is one of paths, or under one of them (the host's answer names only those)."""
    for asked in paths:
        top = PurePosixPath(asked.rstrip("/") or ".").as_posix()
        if top == "." or path == top or path.startswith(top + "/"):
            return True
    return False


def _same_size(dest: Path, f: dict) -> bool:
    target = safe_destination(dest, f["path"])
    return target.is_file() and target.stat().st_size == f["size"]


def _receive_one(src: IO[bytes], want: dict, progress: TransferProgress) -> None:
    """One file's frame into its .tether-part file, hashed as it is written; verified against
    the listing's sha256, or the one the host sends after the bytes; then renamed into place."""
    header = _frame_line(src, f"header for {want['path']!r}")
    if header.get("path") != want["path"]:
        raise RemoteError(f"pull: expected {want['path']!r} from the host, got {header!r:.200}")
    if "error" in header:
        raise RemoteError(f"pull: {want['path']}: {plain(str(header['error']), 300)}",
                          "it changed or went away on the host while pulling (a pruned backup?): run pull again")
    part: Path = want["part"]
    part.parent.mkdir(parents=True, exist_ok=True)
    resumed = header.get("offset") == want["offset"] and want["offset"] > 0
    length = header.get("length")
    if not isinstance(length, int) or isinstance(length, bool) or length < 0 \
            or length + (want["offset"] if resumed else 0) != want["size"]:
        raise RemoteError(f"pull: the host's frame for {want['path']!r} does not match its listing ({header!r:.200})",
                          "run pull again")
    h = BackgroundHash(sha256_of_part(part) if resumed else None)
    try:
        _write_part(src, part, resumed, length, h, want["path"], progress)
    except BaseException:
        h.hexdigest()  # ends its thread
        raise
    expected = want.get("sha256")
    if expected is None:  # sent after the bytes
        try:
            expected = _frame_line(src, f"sha256 line for {want['path']!r}").get("sha256")
        except RemoteError:
            part.unlink()
            raise
    if h.hexdigest() != expected:
        part.unlink()
        raise RemoteError(f"pull: {want['path']} does not match its sha256 (changed while pulling?)",
                          "run pull again")
    os.replace(part, want["target"])


def _write_part(src: IO[bytes], part: Path, resumed: bool, left: int, h: BackgroundHash, name: str,
                progress: TransferProgress) -> None:
    with open(part, "ab" if resumed else "wb") as f:
        while left:
            block = src.read(min(left, 1 << 20))
            if not block:
                raise RemoteError(f"pull: the connection ended inside {name}",
                                  "run pull again: it resumes where it stopped")
            f.write(block)
            h.update(block)
            left -= len(block)
            progress(len(block))
        f.flush()


def list_backups(client: AgentClient, job_dir: str, check: bool = True) -> List[BackupInfo]:
    """The host's backups, each name checked to be a backup name before it is used anywhere."""
    args = [] if check else ["--no-check"]
    answer = client.call("backups", job_dir, *args, timeout=600 if check else 120)
    try:
        return BackupInfo.list_from_json(answer)
    except ValueError as exc:
        raise RemoteError(f"the host's backups listing was not understood: {exc}") from None


def pick_backup(items: List[BackupInfo], which: str) -> str:
    """'latest' is the newest backup that verifies on the host; else a name."""
    if which == "latest":
        good = [b for b in items if b.verified]
        if not good:
            raise NoBackupError("the job has no verified backup", "see `tether backups JOB`")
        return good[-1].name
    for b in items:
        if b.name == which:
            if not b.verified:
                raise NoBackupError(f"backup {which} does not verify on the host: {b.problem}",
                                    "pick another from `tether backups JOB`")
            return which
    raise NotFoundError(f"no backup named {which!r}", "see `tether backups JOB`")


def verify_pulled_backup(folder: Path) -> None:
    """The pulled copy against its MANIFEST.json, file by file. The manifest came from the
    host: it must name this folder, and every path in it must stay inside it."""
    def bad(why: str) -> RemoteError:
        return RemoteError(f"pulled backup {folder.name}: {why}", "pull it again, or pick another backup")

    try:
        manifest = json.loads((folder / "MANIFEST.json").read_text())
    except (OSError, ValueError):
        raise bad("its MANIFEST.json is missing or not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("name") != folder.name \
            or not isinstance(manifest.get("files"), list):
        raise bad("its MANIFEST.json does not describe this backup")
    for f in manifest["files"]:
        if not (isinstance(f, dict) and isinstance(f.get("path"), str) and isinstance(f.get("size"), int)
                and isinstance(f.get("sha256"), str)):
            raise bad("its MANIFEST.json has a malformed entry")
        try:
            p = safe_destination(folder / "data", f["path"])
        except UnsafePathError:
            raise bad(f"its MANIFEST.json names a path outside it: {f['path'][:80]!r}") from None
        if not p.is_file() or p.stat().st_size != f["size"] or sha256_file(p) != f["sha256"]:
            raise bad(f"{f['path']} does not match its manifest")
