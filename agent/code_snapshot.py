"""A job's code snapshot, made after the launch has its answer.

A launch's host session (launch_session.py) holds the project's lock from the manifest until
the job has its own copy of the code (hard links: codetree.snapshot), so the next launch's
sync cannot change a file under it. Linking 10,000 files takes a fifth of a second, which the
laptop used to wait for. Now the session answers at once and a thread of the same process
makes the snapshot, then lets the lock go; the process ends only once it is made. The job's
agent waits for the snapshot before its workload starts (wait_for_code): the session holds
the job's code guard from before it answers until the code is whole or has failed, so "not
there yet" and "nobody is making it" cannot be mistaken for each other.

The locks stay with the process that took them (no fork, no inherited descriptor): where the
root is on NFS, Linux keeps flock locks as POSIX locks, which belong to a process and would
not pass to a child.
"""

from __future__ import annotations

import fcntl
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .codetree import snapshot
from .files import write_bytes_atomic
from .paths import JobDir, remove_inside


@dataclass(frozen=True)
class DigestCheck:
    """The code must hash to `digest` before it is linked: it came on channels of its own
    (rsync, `agent receive`), after the manifest, so only hashing it again tells what landed.
    The project's manifest cache (code_manifest_cache) is brought up to date on the way."""

    digest: str
    manifest_cache: Path


class SnapshotMaker:
    """The snapshot of code_dir into job, on a thread holding the guard it takes now and the
    project's lock it is handed (lock_fd: closed by it, once the snapshot is made); with a
    check, the code is hashed first and a mismatch is the job's code error."""

    def __init__(self, code_dir: Path, job: JobDir, lock_fd: int, check: Optional[DigestCheck] = None) -> None:
        self.guard = os.open(str(job.code_guard), os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.guard, fcntl.LOCK_EX)  # before any answer: the agent never finds it free too early
        self.code_dir, self.job, self.lock_fd, self.check = code_dir, job, lock_fd, check
        self.thread = threading.Thread(target=self._run, name="snapshot")
        self.thread.start()

    def _run(self) -> None:
        try:
            if self.check is None or _code_is(self.code_dir, self.check, self.job):
                make_now(self.code_dir, self.job)
        finally:
            os.close(self.guard)
            os.close(self.lock_fd)  # the next launch of the project may sync now

    def join(self) -> None:
        self.thread.join()


def _code_is(code_dir: Path, check: DigestCheck, job: JobDir) -> bool:
    from .codetree import manifest
    from .hostops import CODE_NOT_SENT
    from .protocol import code_digest

    try:
        if code_digest(manifest(code_dir, check.manifest_cache)) == check.digest:
            return True
        why = CODE_NOT_SENT
    except Exception as exc:  # said where the agent reads it, never a thread's silent death
        why = f"the job's code could not be read on the host: {exc}"
    write_bytes_atomic(job.code_error, why.encode()[:500])
    return False


def make_now(code_dir: Path, job: JobDir) -> None:
    """The snapshot in a folder of its own, renamed into place when whole; a failure is
    written where the agent reads it."""
    try:
        remove_inside(job.code_partial, job.path)
        snapshot(code_dir, job.code_partial)
        os.rename(job.code_partial, job.code)
    except OSError as exc:
        write_bytes_atomic(job.code_error, f"the job's code could not be copied on the host: {exc}".encode()[:500])
        remove_inside(job.code_partial, job.path)


def wait_for_code(job: JobDir) -> Optional[str]:
    """Blocks while the snapshot is being made. None when the code is there; else why not."""
    try:
        guard = os.open(str(job.code_guard), os.O_RDONLY)
    except FileNotFoundError:
        guard = None  # made with the job (create_job's own snapshot): nothing to wait for
    if guard is not None:
        try:
            fcntl.flock(guard, fcntl.LOCK_SH)
        finally:
            os.close(guard)
    if job.code.is_dir():
        return None
    try:
        return job.code_error.read_text(errors="replace")[:500]
    except FileNotFoundError:
        return "the job's code snapshot did not finish (the process making it ended early)"
