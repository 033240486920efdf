"""The words every message uses: a job's states, its failure classes, and the protocol's
number. Only the standard library's enum: the host's status read (job_status.py) loads these
without the message classes of protocol.py."""

from __future__ import annotations

from enum import Enum

PROTOCOL = 2          # bumped when a message changes meaning; older agents answer without it


class JobState(str, Enum):
    PENDING = "PENDING"
    SETUP = "SETUP"
    RUNNING = "RUNNING"
    BACKING_UP = "BACKING_UP"
    RESTARTING = "RESTARTING"
    STALLED = "STALLED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"
    # Inferred, never written by the agent: its state is non-terminal but it is not running
    # (LOST), or the host does not answer at all (UNREACHABLE).
    LOST = "LOST"
    UNREACHABLE = "UNREACHABLE"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def is_inferred(self) -> bool:
        return self in (JobState.LOST, JobState.UNREACHABLE)


_TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.STOPPED})


class FailureClass(str, Enum):
    USER = "user"          # the workload exited non-zero
    INFRA = "infra"        # killed by a signal (OOM-kill), disk full, host lost
    STALL = "stall"        # no progress for heartbeat.stall_after_s
    BUDGET = "budget"      # limits.max_usd reached
    DEADLINE = "deadline"  # limits.max_hours or the host's session limit reached
