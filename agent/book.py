"""The one writer of state.json and events.jsonl, and the agent's single-instance lock."""

from __future__ import annotations

import fcntl
import os
import time
from typing import Any, Optional

from .files import append_jsonl, read_json_object, write_json_atomic
from .paths import JobDir
from .states import FailureClass, JobState


class StatusBook:
    def __init__(self, job: JobDir) -> None:
        self.job = job
        doc, _ = read_json_object(job.state)  # a damaged state.json starts afresh, never a crash
        self.doc: dict = doc or {}
        self.unsaved = False        # state.json could not be written (disk full): retried
        self.dropped_events = 0

    def event(self, kind: str, **fields: Any) -> None:
        try:
            append_jsonl(self.job.events, {"time": time.time(), "event": kind, **fields})
        except OSError:  # a full disk must not take the agent down with it
            self.dropped_events += 1

    def save(self) -> None:
        """Writes state.json; on a full disk keeps it in memory and tries again next time."""
        try:
            write_json_atomic(self.job.state, self.doc)
            self.unsaved = False
        except OSError:
            self.unsaved = True

    def set(
        self,
        state: JobState,
        reason: Optional[str] = None,
        failure: Optional[FailureClass] = None,
        **extra: Any,
    ) -> None:
        now = time.time()
        self.doc.update(extra)
        self.doc.update(
            state=state.value,
            reason=reason,
            failure=failure.value if failure else None,
            updated_at=now,
            agent_pid=os.getpid(),
        )
        self.doc.setdefault("started_at", now)
        if state.is_terminal:
            self.doc["ended_at"] = now
        self.save()
        self.event("state", state=state.value, reason=reason,
                   failure=failure.value if failure else None)

    @property
    def state(self) -> Optional[JobState]:
        value = self.doc.get("state")
        return JobState(value) if value else None


def lock_path(job: JobDir):
    return job.path / "agent.lock"


class AgentLock:
    """flock on agent.lock, held for the agent's life; the kernel drops it when the agent dies,
    even by SIGKILL, which is how `status` tells a live agent from a LOST one."""

    def __init__(self, job: JobDir) -> None:
        self._fd = os.open(str(lock_path(job)), os.O_RDWR | os.O_CREAT, 0o644)

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)

    def acquire(self, wait_s: float = 3.0) -> bool:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.05)


def agent_alive(job: JobDir) -> bool:
    """True while some process holds the job's agent lock."""
    try:
        fd = os.open(str(lock_path(job)), os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
