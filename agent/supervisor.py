"""The monitor loop: the only code that changes a job's state.

Shaped as torch elastic's agent: an Attempt owns the workload's process; each turn of the
loop, tick(), runs the duties that are due (progress, control, deadline, budget, backups,
mirror, heartbeat: they only report, and one that raises becomes an event, never a dead
agent) and notes the signs of life; policy.judge() turns what was observed into a verdict
(wait, stop, stalled, ended) and whether it earns a restart. Every wait of the agent calls
tick() and has a deadline; time comes from an injected Clock, so tests drive the loop with a
FakeClock and scripted attempts. Restarts resume from the newest verified backup.
"""

from __future__ import annotations

import signal
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

from . import backup, resume_point
from .attempt import Attempt, SignsOfLife
from .backup_keeper import BackupKeeper
from .book import StatusBook
from .clock import REAL, Clock
from .duties import JobDuties, Stopped
from .ending import JobEnding
from .files import write_bytes_atomic
from .history import HistoryKeeper
from .logfile import RotatingLog
from .mirror_keeper import MirrorKeeper
from .nodes import NodeLink
from .paths import JobDir
from .plan import RunPlan, Stage
from .policy import (Act, Judgement, Observation, Verdict, after_attempt, judge, judge_exit, looks_disk_full,
                     oom_kill_count)
from .progress_log import LogProgress
from .progress_reader import ProgressReader
from .protocol import HUB_MIRROR_TOKEN, FailureClass, JobState
from .signals import clear_listeners, dump_stacks, kill_stale_workload
from .watch import ResourceWatch
from .workload_env import child_env, shell_argv, take_secrets_file, write_python_shims

TICK_S = 0.2
FINAL_SAVE_S = 60.0      # at most this long retrying the final state.json (a full disk may free up)

__all__ = ["Supervisor", "judge_exit", "shell_argv", "write_python_shims"]

StartAttempt = Callable[..., Attempt]


@dataclass
class Duty:
    name: str
    every_s: float
    fn: Callable[[], None]
    next_at: float = 0.0
    paused: bool = False


class Supervisor(JobDuties, JobEnding):
    def __init__(self, job: JobDir, plan: RunPlan, runtime_dir: Path, clock: Clock = REAL,
                 start_attempt: StartAttempt = Attempt) -> None:
        self.job, self.plan, self.runtime_dir, self.clock = job, plan, runtime_dir, clock
        self.start_attempt = start_attempt        # tests hand in scripted attempts
        self.book = StatusBook(job)
        self.progress = ProgressReader(job.progress, plan.progress_total)
        self.progress.poll()  # a resumed job: start from what earlier attempts reported
        self.started = clock.time()
        self.stop: Optional[Stopped] = None
        self.child: Optional[Attempt] = None      # the attempt running now
        self.last_child: Optional[Attempt] = None  # ... or the one that ran last (the heartbeat's)
        self.life = SignsOfLife()
        self.attempt = 0
        self.attempt_cause = ""                   # why this attempt began, for the log's marker line
        self.resumed_step: Optional[int] = None   # the step the attempt was given to resume from
        self.regressed: Optional[str] = None      # it reported a step below that: the warning
        self.sigterm_at: Optional[float] = None   # monotonic
        self.ended_at: Optional[float] = None     # monotonic: the workload's last attempt is over
        self.mirror = MirrorKeeper(job, plan, self.book, clock=clock)
        self.keeper = BackupKeeper(job, plan, self.book, self.progress, self._backup_disk_full,
                                   in_use=self.mirror.in_use, clock=clock)
        self.watch = ResourceWatch(plan, self.book)
        self.history = HistoryKeeper(job)
        self.duties = [
            Duty("progress", TICK_S, self._poll_progress),
            Duty("control", TICK_S, self._check_control),
            Duty("deadline", 1.0, self._check_deadline),
            Duty("budget", 1.0, self._check_budget),
            Duty("backup", TICK_S, lambda: self.keeper.tick(self.child.pid if self.child else None)),
            Duty("mirror", 1.0, lambda: self.mirror.tick()),
            Duty("heartbeat", plan.heartbeat_every_s, self._write_heartbeat),
        ]
        self.nodes = NodeLink.for_job(plan.node, job, self.book, self.tick,  # None: a one-node job
                                      lambda: self.stop.reason if self.stop else None)
        if self.nodes:
            self.duties.append(Duty("nodes", TICK_S, lambda: self.nodes.watch(self.child.pid if self.child else None)))

    # -- the loop -------------------------------------------------------------------------

    def tick(self) -> None:
        """One turn of the loop: the duties that are due run, then the signs of life are noted
        on the loop's clock. Every wait below calls it."""
        now = self.clock.monotonic()
        for duty in self.duties:
            if duty.paused or now < duty.next_at:
                continue
            duty.next_at = now + duty.every_s
            self._guarded(duty.name, duty.fn)
        child = self.child
        self.life.note(self.clock.monotonic(), self.progress.last_at, child.last_output_at if child else None)

    def wait(self, done: Callable[[], bool], seconds: float) -> bool:
        """Ticks until done() (True) or `seconds` have passed (False)."""
        end = self.clock.monotonic() + seconds
        while True:
            self.tick()
            if done():
                return True
            left = end - self.clock.monotonic()
            if left <= 0:
                return False
            self.clock.sleep(min(TICK_S, left))

    def run(self, secrets: Optional[Dict[str, str]] = None) -> JobState:
        """secrets: as `start` handed them over (on the agent's stdin); else secrets.json,
        read and deleted at once. Either way they live on only in this process's memory."""
        signal.signal(signal.SIGTERM, self._on_sigterm)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the SSH session that started us may end
        secrets = dict(secrets) if secrets is not None else {}
        secrets.update(take_secrets_file(self.job))
        self.mirror.token = secrets.pop(HUB_MIRROR_TOKEN, None)  # the agent's alone, not the workload's
        verdict = self.supervise(secrets)
        # The last step and metrics land before the final state does: a status read between
        # the two (the launcher keeps an ended job's first answer) must not see a stale step.
        self._guarded("heartbeat", self._write_heartbeat)
        self.book.set(verdict.state, verdict.reason, verdict.failure, exit_code=verdict.exit_code)
        self._guarded("heartbeat", self._write_heartbeat)
        end = self.clock.monotonic() + FINAL_SAVE_S
        while self.book.unsaved and self.clock.monotonic() < end and not self._told_to_go():
            self.clock.sleep(1.0)  # the final state must land (a full disk may free up)
            self.book.save()
        self._teardown_if_rented(verdict)
        return verdict.state

    def supervise(self, secrets: Dict[str, str]) -> Verdict:
        """Setup, the stages with their restarts, the last push off the host: the job's verdict."""
        self._begin()
        try:
            verdict = self._setup(secrets) or self._run_stages(secrets)
            self.ended_at = self.clock.monotonic()
            verdict = self._drain_mirror(verdict)
        except Exception as exc:  # an agent bug must still end the job in a known state
            self.book.event("agent-error", error=repr(exc), traceback=traceback.format_exc())
            verdict = Verdict(JobState.FAILED, f"agent error: {exc!r}", FailureClass.INFRA)
        finally:
            secrets.clear()
            self.mirror.token = None
        self.ended_at = self.ended_at or self.clock.monotonic()
        return verdict

    def _on_sigterm(self, *_: object) -> None:
        self.sigterm_at = self.clock.monotonic()
        self._ask_stop("agent received SIGTERM")

    def _told_to_go(self) -> bool:
        """A SIGTERM after the job ended: whatever the agent still waits for (a push, a pull
        before autodown), it exits now."""
        return self.ended_at is not None and self.sigterm_at is not None and self.sigterm_at >= self.ended_at

    def _final_backup(self, wait_only: bool = False) -> None:
        """The last backup (or, wait_only, the one being copied) lands, the loop ticking
        meanwhile; the periodic backup duty rests so that it starts none of its own."""
        backup_duty = next(d for d in self.duties if d.name == "backup")
        backup_duty.paused = True
        try:
            self._guarded("final-backup", lambda: self.keeper.wait_idle(self.wait) if wait_only
                          else self.keeper.finish(self.wait))
        finally:
            backup_duty.paused = False

    def _begin(self) -> None:
        """A fresh job starts at attempt 0; a resumed one (state.json exists) continues."""
        if self.plan.python:
            write_python_shims(self.job.python_shims, self.plan.python)
        previous = self.book.doc.get("state")
        backup.clean_partials(self.job)
        if previous is None:
            self.book.set(JobState.PENDING, "agent started")
            return
        self.attempt = int(self.book.doc.get("attempt", 0)) + 1
        if kill_stale_workload(self.job, self.book.doc.get("workload_pgid")):
            self.book.event("killed-stale-workload", pgid=self.book.doc.get("workload_pgid"))
        try:
            self.job.stop_request.unlink()
        except FileNotFoundError:
            pass
        self.book.event("resumed", previous_state=previous, attempt=self.attempt)
        self.attempt_cause = f"resumed (was {previous})"

    def _setup(self, secrets: Dict[str, str]) -> Optional[Verdict]:
        """Runs the spec's setup once per (text, inputs); a Verdict only if the job must end."""
        if not self.plan.setup:
            return None
        marker = self.job.root.setup_marker(self.plan.setup_key or "unkeyed")
        if marker.exists():
            self.book.event("setup-skipped", reason="setup and the files it names are unchanged")
            return None
        self.book.set(JobState.SETUP, "running setup")
        outcome = self._run_child(shell_argv(self.plan.setup), self.job.setup_log, secrets, "", watch=False)
        v = outcome.verdict
        assert v is not None
        if outcome.act is Act.STOP:
            return v
        if v.state != JobState.SUCCEEDED:
            return Verdict(v.state, v.reason + "; see logs/setup.log", v.failure, v.exit_code)
        marker.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(marker, self.plan.setup.encode())
        self.book.event("setup-done")
        return None

    def _run_stages(self, secrets: Dict[str, str]) -> Verdict:
        verdict = Verdict(JobState.SUCCEEDED, "nothing to run")
        for stage in self.plan.stages:
            marker = self._stage_marker(stage)
            if marker.exists():
                self.book.event("stage-skipped", stage=stage.name, reason="finished in an earlier run")
                continue
            verdict = self._run_stage(stage, secrets)
            if verdict.state != JobState.SUCCEEDED:
                return verdict
            # Only lets a rerun skip this stage: a full disk must not turn success into an agent error.
            self._guarded("stage-marker", lambda: (marker.parent.mkdir(parents=True, exist_ok=True),
                                                   write_bytes_atomic(marker, b"")))
            self.book.event("stage-done", stage=stage.name)
        if len(self.plan.stages) > 1 and verdict.state == JobState.SUCCEEDED:
            verdict = Verdict(JobState.SUCCEEDED, f"all {len(self.plan.stages)} stages finished", None, 0)
        return verdict

    def _stage_marker(self, stage: Stage) -> Path:
        return self.job.path / "stages" / f"{stage.name}.done"

    def _run_stage(self, stage: Stage, secrets: Dict[str, str]) -> Verdict:
        restarts = 0
        while True:
            if self.stop:
                return Verdict(JobState.STOPPED, self.stop.reason, self.stop.failure)
            refused = self.nodes.before_attempt(self.progress.announced) if self.nodes else None
            if refused:
                return refused
            resume = self._resume_point() if self.attempt > 0 or self.plan.resume_first else ""
            self.book.set(JobState.RUNNING, f"workload started (attempt {self.attempt})", attempt=self.attempt,
                          stage=stage.name, resumed_from=resume or None)
            outcome = self._run_child(shell_argv(stage.command), self.job.workload_log, secrets, resume)
            self.progress.poll()
            self._guarded("heartbeat", self._write_heartbeat)  # the last step it reported, before any end state
            verdict = outcome.verdict
            assert verdict is not None
            if outcome.act is Act.STOP:
                self.book.set(JobState.BACKING_UP, "final backup before stopping")
                self._final_backup()
                return self.nodes.settle(verdict) if self.nodes else verdict
            if verdict.state == JobState.SUCCEEDED:  # the newest backup is the end state
                self.book.set(JobState.BACKING_UP, "final backup of what the workload left")
                self._final_backup()
            if self.nodes:  # one verdict for every node: a peer's failure restarts this one too
                verdict = self.nodes.settle(verdict)
            final = after_attempt(verdict, self.plan.restart_on, self.plan.restart_max, restarts)
            if final is not None:
                return final
            restarts += 1
            self.attempt += 1
            self.attempt_cause = verdict.reason
            self.book.set(JobState.RESTARTING, f"{verdict.reason}; restart {restarts} of {self.plan.restart_max} "
                          f"in {self.plan.restart_backoff_s:g}s", verdict.failure, exit_code=verdict.exit_code)
            self.wait(lambda: self.stop is not None, self.plan.restart_backoff_s)

    def _resume_point(self) -> str:
        point = (self.nodes.choose if self.nodes else resume_point.choose)(self.job, self.progress.announced, self.book)
        self.book.doc["resumed_unverified"] = not point.verified
        self.book.doc["resumed_step"] = point.step
        self.resumed_step = point.step
        self.progress.resumed_at(point.step)
        return point.path

    def _run_child(self, argv: List[str], log_path: Path, secrets: Dict[str, str], resume: str,
                   watch: bool = True) -> Judgement:
        """One attempt of argv, watched until it ends, is stopped or stalls: how it ended."""
        log = RotatingLog(log_path, self.plan.log_max_bytes)
        if watch and self.attempt > 0:  # where one attempt's output ends and the next begins
            self._guarded("log-marker", lambda: log.write(
                f"--- attempt {self.attempt}, after {self.attempt_cause or 'a restart'} ---\n".encode()))
        clear_listeners(self.job)
        if watch:
            self.progress.mark()
        from_log = LogProgress(self.plan.progress_pattern, self.job.progress) \
            if watch and self.plan.progress_pattern else None
        oom_before = oom_kill_count() if watch else None
        env = child_env(self.job, self.plan, self.runtime_dir, secrets, resume, self.attempt)
        env.update(self.nodes.env() if self.nodes else {})  # rank, master, the interface to reach it
        child = self.start_attempt(argv, self.job.code, env, log, from_log.feed if from_log else None,
                                   self.clock.monotonic())
        self.child = self.last_child = child
        self.life.reset(child.started, self.progress.last_at, child.last_output_at)
        self.book.doc["workload_pgid"] = child.pid
        self.book.event("child-started", pid=child.pid, log=log_path.name, attempt=self.attempt)
        try:
            return self._watch(child, watch, oom_before)
        finally:
            self.child = None
            child.close()

    def _watch(self, child: Attempt, watch: bool, oom_before: Optional[int]) -> Judgement:
        """The attempt's wait, bounded by the stall rule and the job's deadline: ticks until
        judge() says it is over, then carries out what it said."""
        while True:
            self.tick()
            obs = self._observe(child, watch, oom_before)
            outcome = judge(obs, self.plan.stall_after_s)
            if outcome.act is Act.STOP:
                self._terminate(child)
            elif outcome.act is Act.STALLED:
                return self._stalled(child, obs.quiet_s)
            if outcome.act is not Act.WAIT:
                return outcome
            self.clock.sleep(TICK_S)

    def _observe(self, child: Attempt, watch: bool, oom_before: Optional[int]) -> Observation:
        rc = child.poll()
        stop = self.stop
        quiet = self.life.quiet_s(self.clock.monotonic(), reports_progress=self.progress.last_at is not None)
        if rc is None or not watch:
            return Observation(rc, quiet, stop.reason if stop else None, stop.failure if stop else None,
                               watched=watch, what="workload" if watch else "setup")
        oom_after = oom_kill_count() if rc != 0 else None
        return Observation(rc, quiet, watched=watch,
                           oom_killed=oom_before is not None and oom_after is not None and oom_after > oom_before,
                           disk_full=rc != 0 and looks_disk_full(self.job.path, self._log_tail()))

    def _stalled(self, child: Attempt, quiet: float) -> Judgement:
        dest = self.job.stacks(self.attempt)
        how = self._guarded("stacks", lambda: dump_stacks(self.job, child.pid, dest), "none")
        self.book.event("stalled", quiet_s=round(quiet, 1), stacks=dest.name, how=how)
        child.kill()
        return Judgement(Act.STALLED, Verdict(JobState.FAILED, f"no progress for {quiet:.0f}s; stacks in "
                                              f"logs/{dest.name}", FailureClass.STALL))

    def _terminate(self, child: Attempt) -> None:
        """SIGTERM to the group, stop.grace_s to finish (the loop ticks on), then SIGKILL."""
        self.book.event("terminating", pid=child.pid, grace_s=self.plan.grace_s)
        child.signal(signal.SIGTERM)
        if not self.wait(lambda: child.poll() is not None, self.plan.grace_s):
            self.book.event("killed", pid=child.pid, reason="grace period over")
            child.kill()

    def _guarded(self, name: str, fn: Callable[[], object], default: object = None) -> object:
        """fn's result; if it raises, an event and `default`: a duty never kills the agent."""
        try:
            return fn()
        except Exception as exc:
            self.book.event("duty-failed", duty=name, error=repr(exc))
            return default
