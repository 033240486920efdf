"""Verified backups of checkpoints: backups/<stamp>-step<N>/{data/..., MANIFEST.json}.

A backup is built in backups/.tmp-<name>/, its MANIFEST.json (every file's size and sha256)
written last, and only then renamed into place: a backup folder without a manifest is never
complete. "Verified" means every file is there with its size and sha256.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Collection, List, Optional

from .codetree import safe_relpath
from .files import read_json, write_json_atomic
from .paths import BACKUP_MANIFEST, JobDir
from .protocol import sha256_file

MANIFEST = BACKUP_MANIFEST


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


def _name(step: Optional[int], now: float, taken: List[str]) -> str:
    base = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + (f"-step{step}" if step is not None else "")
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name


def _copy_tree(src: Path, dst: Path, link: bool) -> None:
    """src (a file or folder) into dst; hard links when allowed, else real copies."""
    items = [src] if src.is_file() else [p for p in sorted(src.rglob("*")) if p.is_file() and not p.is_symlink()]
    for p in items:
        rel = Path(p.name) if src.is_file() else p.relative_to(src)
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if link:
            try:
                os.link(p, target)
                continue
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise
        shutil.copy2(p, target)


def take(job: JobDir, source: str, step: Optional[int], link: bool = True) -> Backup:
    """Copies checkpoints/<source> into a new verified backup. Raises OSError (ENOSPC...)
    after removing its partial folder; existing backups are never touched."""
    src = job.checkpoints / safe_relpath(source) if source else job.checkpoints
    if not src.exists():
        raise FileNotFoundError(f"checkpoint {source or 'checkpoints/'} does not exist")
    job.backups.mkdir(parents=True, exist_ok=True)
    now = time.time()
    name = _name(step, now, [b.name for b in list_backups(job)])
    tmp = job.backups / f".tmp-{name}"
    try:
        data = tmp / "data" / source if source else tmp / "data"
        if src.is_file():
            data = data.parent
        _copy_tree(src, data, link)
        files = []
        for p in sorted((tmp / "data").rglob("*")):
            if p.is_file():
                files.append({"path": p.relative_to(tmp / "data").as_posix(), "size": p.stat().st_size,
                              "sha256": sha256_file(p)})
        manifest = {"name": name, "step": step, "source": source, "created": now, "files": files}
        write_json_atomic(tmp / MANIFEST, manifest)
        os.rename(tmp, job.backups / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Backup(name, step, source, now, sum(f["size"] for f in files), len(files))


def load(folder: Path) -> Optional[Backup]:
    m = read_json(folder / MANIFEST) if folder.is_dir() else None
    if not m:
        return None
    return Backup(m["name"], m.get("step"), m.get("source", ""), m["created"],
                  sum(f["size"] for f in m["files"]), len(m["files"]))


def verify(job: JobDir, backup: Backup) -> Optional[str]:
    """None if every file matches the manifest, else what is wrong."""
    return verify_folder(job.backups / backup.name)


def verify_folder(folder: Path) -> Optional[str]:
    m = read_json(folder / MANIFEST) or {}
    data = folder / "data"
    for f in m.get("files", []):
        p = data / f["path"]
        if not p.is_file():
            return f"{f['path']} is missing"
        if p.stat().st_size != f["size"]:
            return f"{f['path']} has {p.stat().st_size} bytes, the manifest says {f['size']}"
        if sha256_file(p) != f["sha256"]:
            return f"{f['path']} does not match its sha256"
    return None


def list_backups(job: JobDir) -> List[Backup]:
    """Complete backups, oldest first."""
    if not job.backups.is_dir():
        return []
    found = [load(p) for p in job.backups.iterdir() if not p.name.startswith(".")]
    return sorted((b for b in found if b), key=lambda b: (b.created, b.name))


def newest_verified(job: JobDir, on_skip: Callable[[Backup, str], None]) -> Optional[Backup]:
    for b in reversed(list_backups(job)):
        problem = verify(job, b)
        if problem is None:
            return b
        on_skip(b, problem)
    return None


def prune(job: JobDir, keep: int, spare: Collection[str] = ()) -> List[str]:
    """Deletes the oldest complete backups beyond `keep`, except those in `spare` (one still
    being read, e.g. pushed to the Hub); returns their names."""
    gone = []
    for b in list_backups(job)[:-keep] if keep > 0 else []:
        if b.name in spare:
            continue
        shutil.rmtree(job.backups / b.name, ignore_errors=True)
        gone.append(b.name)
    return gone


def clean_partials(job: JobDir) -> None:
    if job.backups.is_dir():
        for p in job.backups.iterdir():
            if p.name.startswith(".tmp-"):
                shutil.rmtree(p, ignore_errors=True)


def restore(job: JobDir, backup: Backup) -> Path:
    """A fresh hard-linked copy under restore/<name>/ for the workload to read; returns the
    path TETHER_RESUME_FROM should name (the checkpoint as the workload announced it)."""
    shutil.rmtree(job.path / "restore", ignore_errors=True)  # one restore at a time
    dest = job.path / "restore" / backup.name
    _copy_tree(backup.data(job), dest, link=True)
    dest.mkdir(parents=True, exist_ok=True)
    return dest / backup.source if backup.source else dest


def main_take(job_dir: str, source: str, step: str, mode: str) -> int:
    """`python -m agent backup ...`: runs in its own low-priority process, prints one JSON line."""
    try:
        os.nice(19)
    except OSError:
        pass
    job = JobDir(job_dir)
    try:
        b = take(job, source, int(step) if step != "-" else None, link=(mode == "link"))
    except OSError as exc:
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}",
                          "disk_full": exc.errno in (errno.ENOSPC, errno.EDQUOT)}))
        return 1
    print(json.dumps({"ok": True, "backup": asdict(b)}))
    return 0


def backup_summary(job: JobDir, check: bool) -> List[dict]:
    out = []
    for b in list_backups(job):
        d = asdict(b)
        if check:
            problem = verify(job, b)
            d["verified"], d["problem"] = problem is None, problem
        out.append(d)
    return out


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main_take(*sys.argv[1:5]))
