"""Where a restarted or resumed attempt starts from: the newest complete checkpoint there is.

A verified backup, or a checkpoint the workload announced that is still in checkpoints/ and
newer than every backup (announced means finished: on a restart on the same host it is not
redone). With no backup that verifies, whatever checkpoints/ holds, said as unverified. The
workload always gets a private copy under restore/, never the original."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

from . import backup
from .book import StatusBook
from .paths import JobDir


@dataclass(frozen=True)
class ResumePoint:
    path: str                 # TETHER_RESUME_FROM ("" = from scratch)
    step: Optional[int]       # the step it holds, when known
    verified: bool            # from a backup that verified (else live files)


def _newest_live(job: JobDir, announced: List[Tuple[str, Optional[int]]]) -> Optional[Tuple[str, Optional[int]]]:
    """The newest announced checkpoint still in checkpoints/ (a Trainer deletes old ones)."""
    for source, step in reversed(announced):
        if backup.live_checkpoint(job, source) is not None:
            return source, step
    return None


def choose(job: JobDir, announced: List[Tuple[str, Optional[int]]], book: StatusBook) -> ResumePoint:
    newest = backup.newest_verified(
        job, lambda b, problem: book.event("backup-skipped", name=b.name, problem=problem))
    live = _newest_live(job, announced)
    if live is not None and live[1] is not None and (newest is None or (newest.step or -1) < live[1]):
        path = backup.restore_live(job, live[0])
        if path is not None:
            book.event("resume", backup=None, live=live[0], step=live[1], path=str(path), unverified=newest is None,
                       reason=f"checkpoint {live[0]} (step {live[1]}) in checkpoints/ is newer than every backup")
            return ResumePoint(str(path), live[1], newest is not None)
    if newest is not None:
        path = backup.restore(job, newest)
        book.event("resume", backup=newest.name, step=newest.step, path=str(path))
        return ResumePoint(str(path), newest.step, True)
    last = announced[-1][0] if announced else None
    path = backup.restore_live(job, last)
    if path is not None:  # better than from scratch, but nothing vouches for it
        book.event("resume", backup=None, unverified=True, path=str(path),
                   reason="no backup verifies: resuming from the live checkpoints/ folder")
        return ResumePoint(str(path), None, False)
    book.event("resume", backup=None, reason="no verified backup: starting from scratch")
    return ResumePoint("", None, True)
