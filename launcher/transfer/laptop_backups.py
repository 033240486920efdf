"""Backups that follow the job off its host. `backup: {mirror: laptop}`: every tether command
(and `tether watch`) brings new verified backups to <TETHER_HOME>/mirrors/<job-id>/ (node K of
a multi-node job: .../<job-id>/node-K/). They are what `tether resume JOB --on` carries to a
new host when the old one is gone."""

from __future__ import annotations

import fcntl
import json
import tarfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional

from rich.console import Console

from agent.paths import backup_order, is_backup_name, remove_inside

from launcher.transport.agent_client import AgentClient
from launcher.errors import NoBackupError, RemoteError
from launcher.registry import JobRecord
from launcher.transfer.pull import list_backups, pull, verify_pulled_backup
from launcher.settings import Places


def mirror_dir(places: Places, rec: JobRecord, node: Optional[int] = None) -> Path:
    """The job's mirror; node K's part of a multi-node job's (K from our own loop)."""
    base = places.data / "mirrors" / rec.id
    return base if node is None else base / f"node-{int(node)}"


def local_backups(places: Places, rec: JobRecord, node: Optional[int] = None) -> List[Path]:
    """Complete, verified mirrored backups (of node K), oldest first."""
    folder = mirror_dir(places, rec, node) / "backups"
    found = []
    for p in folder.iterdir() if folder.is_dir() else []:
        if not is_backup_name(p.name) or p.is_symlink() or not (p / "MANIFEST.json").is_file():
            continue
        try:
            verify_pulled_backup(p)
        except (RemoteError, ValueError, OSError):
            continue
        found.append(p)
    return sorted(found, key=lambda p: backup_order(p.name))


def sync_to_laptop(client: AgentClient, rec: JobRecord, places: Places, console: Console,
                   node: Optional[int] = None) -> List[str]:
    """Pulls the host's backups the laptop does not have yet; keeps the newest backup.keep, and
    never the newest that verifies. Names come from the host: only backup names pass
    (list_backups), and every delete is checked to stay inside this job's mirror folder.
    node: rec is node K's record of a multi-node job; its backups go to its own folder.
    While another tether command fills the same folder (watch beside status): nothing."""
    dest = mirror_dir(places, rec, node)
    with _mirroring(dest) as mine:
        return _sync(client, rec, places, console, node, dest) if mine else []


@contextmanager
def _mirroring(dest: Path) -> Iterator[bool]:
    """Whether this process holds the mirror folder (for the block). Two commands at once would
    append to the same .tether-part files, and the one whose copy then failed to verify would
    delete the backup the other had just verified."""
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / ".mirroring.lock", "a") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True  # let go when the file closes


def _sync(client: AgentClient, rec: JobRecord, places: Places, console: Console, node: Optional[int],
          dest: Path) -> List[str]:
    have = {p.name for p in local_backups(places, rec, node)}
    new = [b.name for b in list_backups(client, rec.job_dir, check=False) if b.name not in have]
    folder = dest / "backups"
    got = []
    for name in new:
        try:
            pull(client, rec.job_dir, [f"backups/{name}/"], dest, console)
            verify_pulled_backup(folder / name)
            got.append(name)
        except (RemoteError, FileNotFoundError, ValueError):
            # Pruned on the host while we pulled it (keep is small), or not whole: the next
            # look brings a newer one.
            remove_inside(folder / name, folder, anchor=dest)
    keep = int(((rec.spec or {}).get("backup") or {}).get("keep", 3))
    for old in local_backups(places, rec, node)[:-keep]:  # all verified: the newest is among those kept
        remove_inside(old, folder, anchor=dest)
    return got


def newest(places: Places, rec: JobRecord) -> Path:
    found = local_backups(places, rec)
    if not found:
        raise NoBackupError(f"job {rec.id} has no backup mirrored to this laptop",
                            "set backup.mirror: laptop, and run tether status or tether watch while it runs")
    return found[-1]


def send_backup(client: AgentClient, job_dir: str, folder: Path) -> dict:
    """The mirrored backup folder, streamed as a tar into `agent receive-backup`, which keeps
    it only if it verifies against its manifest there."""
    stream = client.stream("receive-backup", job_dir, folder.name)
    try:
        with tarfile.open(fileobj=stream.stdin, mode="w|") as tar:
            for p in sorted(folder.rglob("*")):
                if p.is_file() and not p.is_symlink():
                    tar.add(str(p), arcname=p.relative_to(folder).as_posix(), recursive=False)
        stream.close_stdin()
    except OSError:
        pass  # the host stopped reading: its answer says why
    out = stream.stdout.read()
    if stream.wait() != 0:
        raise RemoteError(f"the new host refused backup {folder.name}: {stream.stderr_text().strip()[-300:]}")
    return json.loads(out)


def latest_step(folder: Optional[Path]) -> Optional[int]:
    if folder is None:
        return None
    step = json.loads((folder / "MANIFEST.json").read_text()).get("step")
    return step if isinstance(step, int) and not isinstance(step, bool) else None
