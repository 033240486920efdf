"""Names and values both sides of the wire agree on: job states, failure classes, the file digest."""

from __future__ import annotations

import hashlib
from enum import Enum
from pathlib import Path


# The key of the hf:// mirror's Hub token among a job's secrets: the agent keeps it for itself.
HUB_MIRROR_TOKEN = "TETHER_HUB_MIRROR_TOKEN"


def sha256_file(path: Path) -> str:
    """The digest every manifest and code delta compares, computed the same on both sides."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
