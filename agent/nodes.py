"""The supervisor's view of a multi-node job: a few hooks around each attempt (join, resume
step, watch for a failed peer, one verdict for all). A one-node job has no NodeLink."""

from __future__ import annotations

import os
import signal
import time
from typing import Callable, Dict, List, Optional, Tuple, Union

from . import backup
from .book import StatusBook
from .paths import JobDir
from .peers import Coordinator, Gate, Member, Report
from .policy import Verdict
from .protocol import FailureClass, JobState
from .rendezvous import NodePlan
from .resume_point import ResumePoint

PEER_ABORT_GRACE_S = 10.0   # a workload told to stop because a peer failed cannot checkpoint anyway

Announced = List[Tuple[str, Optional[int]]]


def candidate_steps(job: JobDir, announced: Announced) -> List[int]:
    """Steps this node could resume from: verified backups and announced checkpoints still here."""
    steps = [b.step for b in backup.list_backups(job) if b.step is not None and backup.verify(job, b) is None]
    steps += [s for src, s in announced if s is not None and backup.live_checkpoint(job, src) is not None]
    return sorted(set(steps))


def restore_step(job: JobDir, announced: Announced, step: Optional[int], book: StatusBook) -> ResumePoint:
    """This node's copy of the step every node holds (each node keeps its own ZeRO shards)."""
    if step is not None:
        for b in reversed(backup.list_backups(job)):
            if b.step == step and backup.verify(job, b) is None:
                path = backup.restore(job, b)
                book.event("resume", backup=b.name, step=step, path=str(path), reason="the newest step on every node")
                return ResumePoint(str(path), step, True)
        for src, s in reversed(announced):
            path = backup.restore_live(job, src) if s == step else None
            if path is not None:
                book.event("resume", backup=None, live=src, step=step, path=str(path))
                return ResumePoint(str(path), step, False)
    book.event("resume", backup=None, reason="no checkpoint step that every node holds: starting from scratch")
    return ResumePoint("", None, True)


class NodeLink:
    def __init__(self, plan: NodePlan, job: JobDir, book: StatusBook, idle: Callable[[], None],
                 stopping: Callable[[], Optional[str]]) -> None:
        self.plan, self.job, self.book, self.stopping = plan, job, book, stopping
        self.idle = lambda: bool(idle())   # duties only: settling waits for every node whatever happens
        self.peers: Union[Coordinator, Member] = Coordinator(plan) if plan.is_master else Member(plan)
        self.gate = Gate(False)
        self.signalled: Optional[Tuple[int, float]] = None   # (pgid, monotonic) of the abort's SIGTERM

    @classmethod
    def for_job(cls, node: Optional[dict], job: JobDir, book: StatusBook, idle: Callable[[], None],
                stopping: Callable[[], Optional[str]]) -> Optional["NodeLink"]:
        """node: the run plan's node facts (None for a one-host job). stopping: why the job is
        being stopped (a stop while waiting for the nodes ends the wait)."""
        plan = NodePlan.from_json(node)
        return cls(plan, job, book, idle, stopping) if plan is not None and plan.count > 1 else None

    def env(self) -> Dict[str, str]:
        return self.plan.env()

    def before_attempt(self, announced: Announced) -> Optional[Verdict]:
        """Waits for every node and the probe; a Verdict only when the job cannot start."""
        p = self.plan
        self.book.set(JobState.PENDING, f"node {p.rank} of {p.count}: waiting for every node at "
                      f"{p.master_addr}:{p.master_port}")
        self.gate = self.peers.gather(candidate_steps(self.job, announced),
                                      lambda: self.idle() or self.stopping() is not None)
        self.signalled = None
        if self.stopping() is not None:
            return Verdict(JobState.STOPPED, str(self.stopping()))
        self.book.event("nodes-joined" if self.gate.ok else "nodes-not-joined", node=p.rank, nodes=p.count,
                        reason=self.gate.reason or None, step=self.gate.step)
        return None if self.gate.ok else Verdict(JobState.FAILED, self.gate.reason, FailureClass.INFRA)

    def choose(self, job: JobDir, announced: Announced, book: StatusBook) -> ResumePoint:
        return restore_step(job, announced, self.gate.step, book)

    def watch(self, child_pid: Optional[int]) -> None:
        """A duty: a failed peer stops this node's workload within seconds (SIGTERM, then
        SIGKILL), rather than leaving it blocked in a collective."""
        reason = self.peers.abort_reason()
        if child_pid is None or (reason is None and self.signalled is None):
            return
        if self.signalled is None:
            self.book.event("peer-failed", reason=reason, action="stopping this node's workload")
            self.signalled = (child_pid, time.monotonic())
            _kill_group(child_pid, signal.SIGTERM)
        elif time.monotonic() - self.signalled[1] > PEER_ABORT_GRACE_S:
            _kill_group(child_pid, signal.SIGKILL)

    def settle(self, verdict: Verdict) -> Verdict:
        """Every node's outcome of this attempt as one verdict, the same on every node."""
        own = Report(verdict.state, verdict.reason, verdict.failure, aborted=self.signalled is not None)
        joint = self.peers.settle(own, self.idle)
        self.book.event("nodes-settled", node=self.plan.rank, own=own.to_json(), job=joint.to_json())
        return Verdict(joint.state, joint.reason, joint.failure, verdict.exit_code)


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
