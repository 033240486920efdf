"""The end of a job, after its last attempt: the newest backup and the outputs go off the
host (backup.mirror), then a rented host destroys itself once the results are safe
(autodown). A mixin of Supervisor; its waits are the loop's, so the duties go on."""

from __future__ import annotations

from . import backup, teardown
from .hostops import mark_results_safe as hostops_mark_safe
from .policy import Verdict
from .protocol import FailureClass, JobState

BUDGET_DRAIN_S = 300.0   # at most this long pushing the last backup once the budget is spent


class JobEnding:
    def _drain_mirror(self, verdict: Verdict) -> Verdict:
        """The newest backup goes off the host before the job ends (a session about to close,
        a budget about to destroy the instance); if it cannot, the final reason says so."""
        if not self.mirror.enabled:
            return verdict
        self._final_backup(wait_only=True)
        self.book.set(JobState.BACKING_UP, f"pushing the newest backup to hf://{self.plan.mirror_repo}")
        wait = self.plan.mirror_wait_s
        if verdict.failure == FailureClass.BUDGET:  # the instance bills while we wait
            wait = min(wait, BUDGET_DRAIN_S)
        started = self.clock.monotonic()
        problem = self.mirror.drain(wait, self.wait, self._told_to_go)
        self.keeper.tidy()  # nothing is being pushed now: the host keeps `keep` again
        if problem is None:
            left = max(0.0, wait - (self.clock.monotonic() - started))
            problem = self.mirror.push_outputs(left, self.wait, self._told_to_go)
        if problem is None:  # the newest backup and the outputs are off the host
            hostops_mark_safe(self.job, f"mirrored to hf://{self.plan.mirror_repo}")
            return verdict
        self.book.event("mirror-incomplete", problem=problem)
        return Verdict(verdict.state, f"{verdict.reason}; {problem}", verdict.failure, verdict.exit_code)

    def _teardown_if_rented(self, verdict: Verdict) -> None:
        """Budget: destroy now (backup, stop, destroy). Otherwise once results are safe."""
        if not self.plan.autodown or not self.job.teardown.exists():
            return
        if verdict.failure == FailureClass.BUDGET:
            teardown.send(self.job, self.book)
            return
        wait_s = self.plan.autodown_wait_s
        if self.plan.max_usd is not None and self.plan.price_per_hour:  # never past the budget
            left_usd = self.plan.max_usd - (self.spend() or 0.0)
            wait_s = max(0.0, min(wait_s, left_usd / self.plan.price_per_hour * 3600.0))
        teardown.wait_until_safe_then_send(
            self.job, self.book, lambda: self._guarded("heartbeat", self._write_heartbeat),
            self.plan.heartbeat_every_s, wait_s=wait_s, should_quit=self._told_to_go,
            unsaved=lambda: self._unsaved_results(verdict), clock=self.clock)

    def _unsaved_results(self, verdict: Verdict) -> str:
        """What goes down with the host when it is destroyed unpulled, in words."""
        count = sum(1 for _ in backup._files_under(self.job.outputs)) if self.job.outputs.is_dir() else 0
        mirrored = self.mirror.enabled and self.mirror.pending() is None and self.mirror.last is not None
        where = (f"the newest backup is on hf://{self.plan.mirror_repo}" if mirrored
                 else "no backup left the host")
        return f"outputs/ ({count} file(s)) not pulled; {where}"
