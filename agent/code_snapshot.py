"""A job's code snapshot, made after the launch has its answer.

A launch's host session (launch_session.py) holds the project's lock from the manifest until
the job has its own copy of the code (hard links: codetree.snapshot), so the next launch's
sync cannot change a file under it. Linking 10,000 files takes a fifth of a second, which the
laptop used to wait for. Now the session forks a detached child that inherits the lock, makes
the snapshot and lets the lock go; the session answers at once. The job's agent waits for the
snapshot before its workload starts (wait_for_code): the child holds the job's code guard
from before the fork until the code is whole or it has failed, so "not there yet" and
"nobody is making it" cannot be mistaken for each other.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Optional

from .codetree import snapshot
from .files import write_bytes_atomic
from .paths import JobDir, remove_inside


def make_in_background(code_dir: Path, job: JobDir) -> int:
    """Forks the child that makes job's snapshot of code_dir, holding (inherited) every lock
    the caller holds, the project's among them; the caller may close its own copies at once.
    The child's pid."""
    guard = os.open(str(job.code_guard), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(guard, fcntl.LOCK_EX)  # before the fork: the agent can never find it free too early
    pid = os.fork()
    if pid == 0:  # the child: nothing of the session's channel, a session of its own
        status = 1
        try:
            os.setsid()
            quiet = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(quiet, fd)
            make_now(code_dir, job)
            status = 0
        finally:
            os._exit(status)  # never back into the session's code
    os.close(guard)  # the child's copy keeps it locked
    return pid


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
