"""The duties of the monitor loop. Each looks at one thing on its own interval and reports
(an event, a warning in the heartbeat, a stop request); none changes the job's state, which
only the loop in supervisor.py does. A mixin of Supervisor: they read its clock, book,
progress reader, keepers and the attempt running now."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Optional

from .files import read_json_object, write_json_atomic
from .protocol import FailureClass
from .resources import host_sample, process_tree_rss_mb


@dataclass(frozen=True)
class Stopped:
    reason: str
    failure: Optional[FailureClass]


class JobDuties:
    """progress, control, deadline, budget and heartbeat (backups and the mirror have keepers)."""

    def _poll_progress(self) -> None:
        """New progress lines; and a resumed attempt that reports a step below the one it was
        given has not resumed (a script ignoring TETHER_RESUME_FROM): said at once, and the
        backups newer than its progress are kept until it passes that step again."""
        self.progress.poll()
        first, given = self.progress.first_step_since_mark, self.resumed_step
        if self.regressed is None and first is not None and given is not None and first < given:
            self.regressed = (f"attempt {self.attempt} started at step {first}, below step {given} of the checkpoint "
                              "it was given: does the script read TETHER_RESUME_FROM? Newer backups are kept "
                              f"until it passes step {given}")
            self.book.event("resumed-below-checkpoint", attempt=self.attempt, first_step=first, given_step=given)
            self.keeper.keep_steps_above = given
        if self.regressed is not None and (self.progress.step or 0) >= (given or 0):
            self.regressed, self.keeper.keep_steps_above = None, None

    def _ask_stop(self, reason: str, failure: Optional[FailureClass] = None) -> None:
        if not self.stop:
            self.stop = Stopped(reason, failure)

    def _check_control(self) -> None:
        if self.job.stop_request.exists():
            req, _ = read_json_object(self.job.stop_request)
            self._ask_stop(str((req or {}).get("reason") or "stop requested")[:300])

    def _check_deadline(self) -> None:
        at = self.plan.deadline_at
        if at is not None and self.clock.time() >= at - self.plan.deadline_margin_s:
            self._ask_stop(f"deadline: stopping {self.plan.deadline_margin_s:.0f}s before the time limit "
                           "with a final backup; `tether resume` continues", FailureClass.DEADLINE)

    def spend(self) -> Optional[float]:
        p = self.plan
        if not p.price_per_hour or not p.instance_created:
            return None
        return round(p.price_per_hour * (self.clock.time() - p.instance_created) / 3600.0, 4)

    def _check_budget(self) -> None:
        spent = self.spend()
        if self.plan.max_usd is not None and spent is not None and spent >= self.plan.max_usd:
            self._ask_stop(f"budget: ${spent:.2f} spent of limits.max_usd ${self.plan.max_usd:g}; "
                           "final backup, then the instance is destroyed", FailureClass.BUDGET)

    def _backup_disk_full(self, error: str) -> None:
        if self.plan.stop_on_backup_disk_full:
            self._ask_stop(f"disk full during a backup ({error}); backup.on_disk_full is stop",
                           FailureClass.INFRA)

    def _write_heartbeat(self) -> None:
        child, last = self.child, self.last_child
        resources = host_sample(self.job.path)
        rss_mb = process_tree_rss_mb(child.pid if child else None)
        warnings = self.watch.check(resources) + self.keeper.check_kept() + ([self.regressed] if self.regressed else [])
        if last is not None and last.dropped:
            warnings.append(last.dropped)
        write_json_atomic(self.job.heartbeat, {
            "time": self.clock.time(),
            "state": self.book.doc.get("state"),
            "agent_pid": os.getpid(),
            "workload_pid": child.pid if child else None,
            "attempt": self.attempt,
            "uptime_s": round(self.clock.time() - self.started, 1),
            "agent_cpu_s": round(time.process_time(), 3),  # what supervising has cost so far
            "step": self.progress.step,
            "metrics": self.progress.metrics,
            "total_steps": self.progress.total,
            "steps_per_s": self.progress.steps_per_s,
            "eta_s": self.progress.eta_s,
            "last_progress_at": self.progress.last_at,
            "last_output_at": last.last_output_at if last else None,
            "workload_rss_mb": rss_mb,
            "resources": resources,
            "warnings": warnings,
            "backup": self.keeper.summary(),
            "mirror": self.mirror.summary(),
            "deadline_at": self.plan.deadline_at,
            "spend_usd": self.spend(),
        })
        self._guarded("history", lambda: self.history.tick(resources, self.progress.step, rss_mb,
                                                           final=self.ended_at is not None))
        self.book.save()  # workload_pgid and friends kept current; retries after a full disk

    def _log_tail(self) -> bytes:
        try:
            with open(self.job.workload_log, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
                return f.read()
        except OSError:
            return b""
