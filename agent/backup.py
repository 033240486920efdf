"""Verified backups of checkpoints: backups/<stamp>-step<N>/{data/..., MANIFEST.json}.

A backup is built in backups/.tmp-<name>/: its data copied (never hard-linked: a workload
that rewrites a checkpoint in place would rewrite the backup too) and fsynced, then its
MANIFEST.json (every file's size and sha256) written last, and only then renamed into place.
A backup's identity is its folder name; a manifest that is missing, malformed, or disagrees
with its folder makes it "not verified", with the reason, never a crash. "Verified" means
every file is there with its size and sha256.
"""

from __future__ import annotations

import errno
import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Collection, Dict, Iterator, List, Optional, Tuple

from .codetree import safe_relpath
from .files import fsync_path, read_json_object, write_json_atomic
from .paths import BACKUP_MANIFEST, JobDir, backup_order, is_backup_name, remove_inside
from .protocol import sha256_file

MANIFEST = BACKUP_MANIFEST
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FICLONE = 0x40049409  # Linux ioctl: share blocks copy-on-write (btrfs, xfs): safe and instant


@dataclass(frozen=True)
class Backup:
    name: str
    step: Optional[int]
    source: str          # the checkpoint path relative to checkpoints/ ("" = the whole folder)
    created: float
    size: int
    files: int

    def data(self, job: JobDir) -> Path:
        return job.backups / self.name / "data"


@dataclass(frozen=True)
class Unreadable:
    """A folder under backups/ that is not a usable backup, and why."""

    name: str
    problem: str


def _name(step: Optional[int], now: float, taken: Collection[str]) -> str:
    named = step is not None and 0 <= step < 10 ** 18  # as paths.BACKUP_NAME allows: else no step in it
    base = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + (f"-step{step}" if named else "")
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name


def _files_under(src: Path) -> Iterator[Tuple[Path, str]]:
    """(file, path relative to src) for every regular file, symlinks neither followed nor taken."""
    if src.is_file() and not src.is_symlink():
        yield src, src.name
        return
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p.is_file() and not p.is_symlink():
                yield p, p.relative_to(src).as_posix()


def copy_file(src: Path, dst: Path, share: bool = True) -> None:
    """A private copy of src's bytes at dst, on disk before this returns: with share, a reflink
    where the file system shares blocks copy-on-write; else a real copy. Never a hard link."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        try:
            if not share:
                raise OSError("a real copy was asked for")
            import fcntl
            fcntl.ioctl(fout.fileno(), _FICLONE, fin.fileno())
        except (OSError, ImportError):
            while True:
                block = fin.read(1 << 20)
                if not block:
                    break
                fout.write(block)
        fout.flush()
        os.fsync(fout.fileno())
    os.chmod(dst, os.stat(src).st_mode & 0o777)


def copy_tree(src: Path, dst: Path, share: bool = True) -> int:
    """src (a file or folder) into dst, file by file, folders fsynced; returns the file count."""
    count = 0
    folders = {dst}
    for p, rel in _files_under(src):
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        folders.add(target.parent)
        copy_file(p, target, share)
        count += 1
    dst.mkdir(parents=True, exist_ok=True)
    for folder in folders:
        fsync_path(folder)
    return count


def take(job: JobDir, source: str, step: Optional[int], share: bool = True) -> Backup:
    """Copies checkpoints/<source> into a new verified backup. Raises OSError (ENOSPC...) or
    ValueError (an empty checkpoint) after removing its partial folder; existing backups are
    never touched."""
    src = job.checkpoints / safe_relpath(source) if source else job.checkpoints
    if not src.exists() or src.is_symlink():
        raise FileNotFoundError(f"checkpoint {source or 'checkpoints/'} does not exist")
    job.backups.mkdir(parents=True, exist_ok=True)
    now = time.time()
    name = _name(step, now, {p.name for p in job.backups.iterdir()})
    tmp = job.backups / f".tmp-{name}"
    try:
        data = tmp / "data" / source if source else tmp / "data"
        if src.is_file():
            data = data.parent
        if copy_tree(src, data, share) == 0:
            raise ValueError(f"checkpoint {source or 'checkpoints/'} is empty: not a backup")
        files = [{"path": rel, "size": p.stat().st_size, "sha256": sha256_file(p)}
                 for p, rel in _files_under(tmp / "data")]
        manifest = {"name": name, "step": step, "source": source, "created": now, "files": files}
        write_json_atomic(tmp / MANIFEST, manifest)  # last, and fsynced: the backup is whole
        fsync_path(tmp)
        os.rename(tmp, job.backups / name)
        fsync_path(job.backups)
    except BaseException:
        remove_inside(tmp, job.backups)
        raise
    return Backup(name, step, source, now, sum(f["size"] for f in files), len(files))


def _checked_manifest(folder: Path, name: Optional[str] = None) -> Tuple[Optional[dict], Optional[str]]:
    """The manifest if every field is what a backup's manifest holds and it names the backup
    (the folder's name, or `name` for one still being unpacked); else why not."""
    name = folder.name if name is None else name
    if not is_backup_name(name):
        return None, f"{name[:60]!r} is not a backup name"
    m, problem = read_json_object(folder / MANIFEST)
    if m is None:
        return None, problem
    if m.get("name") != name:
        return None, f"its manifest names {str(m.get('name'))[:60]!r}, not its folder {name}"
    step, created, source = m.get("step"), m.get("created"), m.get("source", "")
    if step is not None and (not isinstance(step, int) or isinstance(step, bool) or step < 0):
        return None, "its manifest's step is not a whole number"
    if not isinstance(created, (int, float)) or isinstance(created, bool):
        return None, "its manifest's created time is not a number"
    if not isinstance(source, str) or (source and _unsafe(source)):
        return None, "its manifest's source is not a relative path"
    files = m.get("files")
    if not isinstance(files, list):
        return None, "its manifest lists no files"
    for f in files:
        if not (isinstance(f, dict) and isinstance(f.get("path"), str) and not _unsafe(f["path"])
                and isinstance(f.get("size"), int) and f["size"] >= 0
                and isinstance(f.get("sha256"), str) and _SHA256.fullmatch(f["sha256"])):
            return None, "its manifest has a malformed file entry"
    return m, None


def _unsafe(rel: str) -> bool:
    try:
        safe_relpath(rel)
        return False
    except ValueError:
        return True


def inspect(folder: Path, name: Optional[str] = None) -> Tuple[Optional[Backup], Optional[str]]:
    """(the backup, None) when its manifest is sound, else (None, why not)."""
    if not folder.is_dir() or folder.is_symlink():
        return None, f"{folder.name} is not a folder"
    m, problem = _checked_manifest(folder, name)
    if m is None:
        return None, problem
    return Backup(name or folder.name, m.get("step"), m.get("source", ""), float(m["created"]),
                  sum(f["size"] for f in m["files"]), len(m["files"])), None


def load(folder: Path) -> Optional[Backup]:
    return inspect(folder)[0]


def verify(job: JobDir, backup: Backup) -> Optional[str]:
    """None if every file matches the manifest, else what is wrong."""
    return verify_folder(job.backups / backup.name)


def verify_folder(folder: Path, name: Optional[str] = None) -> Optional[str]:
    m, problem = _checked_manifest(folder, name)
    if m is None:
        return problem
    data = folder / "data"
    for f in m["files"]:
        p = data / f["path"]
        if p.is_symlink() or not p.is_file():
            return f"{f['path']} is missing"
        if p.stat().st_size != f["size"]:
            return f"{f['path']} has {p.stat().st_size} bytes, the manifest says {f['size']}"
        if sha256_file(p) != f["sha256"]:
            return f"{f['path']} does not match its sha256"
    return None


def looks_unchanged(job: JobDir, backup: Backup) -> Optional[str]:
    """A cheap check (no hashing) for the heartbeat: every file there with its manifest size and
    not written after its manifest. None, or what changed (then verify says for sure)."""
    folder = job.backups / backup.name
    m, problem = _checked_manifest(folder)
    if m is None:
        return problem
    try:
        sealed = (folder / MANIFEST).stat().st_mtime_ns
        for f in m["files"]:
            st = (folder / "data" / f["path"]).stat()
            if st.st_size != f["size"] or st.st_mtime_ns > sealed:
                return f"{f['path']} changed after the backup was made"
    except OSError as exc:
        return f"a file is missing ({exc.filename and Path(exc.filename).name})"
    return None


def seal(folder: Path) -> None:
    """A backup that arrived from elsewhere (a mirror): its files on disk, then its manifest
    stamped newest, so looks_unchanged can tell a later rewrite."""
    for p, _ in _files_under(folder / "data"):
        fsync_path(p)
    os.utime(folder / MANIFEST)
    fsync_path(folder / MANIFEST)


def scan(job: JobDir) -> Tuple[List[Backup], List[Unreadable]]:
    """Complete backups, oldest first, and the folders that are not (with why)."""
    good: List[Backup] = []
    bad: List[Unreadable] = []
    if not job.backups.is_dir():
        return good, bad
    for p in job.backups.iterdir():
        if p.name.startswith("."):
            continue
        b, problem = inspect(p)
        if b is None:
            bad.append(Unreadable(p.name, problem or "unreadable"))
        else:
            good.append(b)
    good.sort(key=lambda b: (backup_order(b.name), b.created))
    return good, sorted(bad, key=lambda u: u.name)


def list_backups(job: JobDir) -> List[Backup]:
    """Complete backups, oldest first."""
    return scan(job)[0]


def newest_verified(job: JobDir, on_skip: Callable[[Backup, str], None]) -> Optional[Backup]:
    for b in reversed(list_backups(job)):
        problem = verify(job, b)
        if problem is None:
            return b
        on_skip(b, problem)
    return None


def prune(job: JobDir, keep: int, spare: Collection[str] = (), known_good: Collection[str] = ()) -> List[str]:
    """Deletes the oldest complete backups beyond `keep`, except the newest one that verifies
    (whatever its age: newer ones that do not verify never push it out) and those in `spare`
    (one still being read, e.g. pushed to the Hub). known_good: names verified moments ago,
    not hashed again. Returns the names deleted."""
    found = list_backups(job)
    if keep <= 0 or len(found) <= keep:
        return []
    protected = None
    for b in reversed(found):
        if b.name in known_good or verify(job, b) is None:
            protected = b.name
            break
    gone = []
    for b in found[:-keep]:
        if b.name in spare or b.name == protected:
            continue
        remove_inside(job.backups / b.name, job.backups, anchor=job.path)
        gone.append(b.name)
    return gone


def clean_partials(job: JobDir) -> None:
    if job.backups.is_dir():
        for p in job.backups.iterdir():
            if p.name.startswith(".tmp-"):
                remove_inside(p, job.backups, anchor=job.path)


def _fresh_restore_dir(job: JobDir, name: str) -> Path:
    """restore/<name>/, emptied first: one restore at a time."""
    restore = job.path / "restore"
    if restore.is_symlink() or restore.exists():
        remove_inside(restore, job.path)
    dest = restore / name
    dest.mkdir(parents=True)
    return dest


def restore(job: JobDir, backup: Backup) -> Path:
    """A private copy under restore/<name>/ for the workload to read (and write: nothing it
    does there can touch the backup); returns the path TETHER_RESUME_FROM should name (the
    checkpoint as the workload announced it)."""
    dest = _fresh_restore_dir(job, backup.name)
    copy_tree(backup.data(job), dest)
    return dest / backup.source if backup.source else dest


def live_checkpoint(job: JobDir, source: Optional[str], with_files: bool = True) -> Optional[Path]:
    """checkpoints/<source> if it is there (and, with_files, holds a file). The name came from
    the workload: checked, never followed out of checkpoints/."""
    if not source or _unsafe(source):
        return None
    path = job.checkpoints / safe_relpath(source)
    if path.is_symlink() or not path.exists():
        return None
    if with_files and next(_files_under(path), None) is None:
        return None
    return path


def restore_live(job: JobDir, source: Optional[str]) -> Optional[Path]:
    """A private copy of a live checkpoint: checkpoints/<source> when it is still there, else
    the whole folder; None when there is nothing."""
    src = live_checkpoint(job, source) or job.checkpoints
    if not src.exists() or next(_files_under(src), None) is None:
        return None
    dest = _fresh_restore_dir(job, "live-" + time.strftime("%Y%m%dT%H%M%S", time.gmtime()))
    if src == job.checkpoints:
        copy_tree(src, dest)
        return dest
    copy_tree(src, dest / src.name if src.is_dir() else dest)
    return dest / src.name


def main_take(job_dir: str, source: str, step: str, mode: str = "link") -> int:
    """`python -m agent backup ...`: runs in its own low-priority process, prints one JSON line."""
    try:
        os.nice(19)
    except OSError:
        pass
    job = JobDir(job_dir)
    try:
        b = take(job, source, int(step) if step != "-" else None, share=(mode == "link"))
    except (OSError, ValueError) as exc:
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}",
                          "disk_full": getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT)}))
        return 1
    print(json.dumps({"ok": True, "backup": asdict(b)}))
    return 0


def backup_summary(job: JobDir, check: bool) -> List[Dict[str, object]]:
    """Every folder under backups/, oldest first: verified or not, with the reason."""
    good, bad = scan(job)
    out: List[Dict[str, object]] = []
    for b in good:
        d: Dict[str, object] = asdict(b)
        if check:
            problem = verify(job, b)
            d["verified"], d["problem"] = problem is None, problem
        out.append(d)
    for u in bad:
        out.append({"name": u.name, "step": None, "source": "", "created": None, "size": 0, "files": 0,
                    "verified": False, "problem": u.problem})
    return out


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main_take(*sys.argv[1:5]))
