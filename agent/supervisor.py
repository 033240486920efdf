"""The monitor loop: the only code that changes a job's state.

Duties (progress, control, heartbeat, backups, deadline, resource watch) run on their own
intervals inside the loop and only report; a duty that raises becomes an event, never a dead
agent. Verdicts come from policy.py; restarts resume from the newest verified backup.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

from . import backup, resume_point, teardown
from .backup_keeper import BackupKeeper
from .book import StatusBook
from .files import read_json_object, write_bytes_atomic, write_json_atomic
from .logfile import LogPump, RotatingLog
from .mirror_keeper import MirrorKeeper
from .nodes import NodeLink
from .paths import JobDir
from .plan import RunPlan, Stage
from .policy import Verdict, judge_exit, looks_disk_full, oom_kill_count, wants_restart
from .progress_log import LogProgress
from .progress_reader import ProgressReader
from .protocol import HUB_MIRROR_TOKEN, FailureClass, JobState
from .resources import host_sample, process_tree_rss_mb
from .history import HistoryKeeper
from .hostops import mark_results_safe as hostops_mark_safe
from .hub_client import keep_memory_private
from .signals import clear_listeners, dump_stacks, kill_stale_workload
from .watch import ResourceWatch

TICK_S = 0.2
BUDGET_DRAIN_S = 300.0   # at most this long pushing the last backup once the budget is spent

__all__ = ["Supervisor", "judge_exit", "main_run"]


@dataclass
class Duty:
    name: str
    every_s: float
    fn: Callable[[], None]
    next_at: float = 0.0


@dataclass(frozen=True)
class Stopped:
    reason: str
    failure: Optional[FailureClass]


@dataclass(frozen=True)
class Stalled:
    quiet_s: float
    stacks: str


def shell_argv(command: str) -> List[str]:
    shell = shutil.which("bash") or "/bin/sh"
    return [shell, "-c", command]


class Supervisor:
    def __init__(self, job: JobDir, plan: RunPlan, runtime_dir: Path) -> None:
        self.job, self.plan, self.runtime_dir = job, plan, runtime_dir
        self.book = StatusBook(job)
        self.progress = ProgressReader(job.progress, plan.progress_total)
        self.progress.poll()  # a resumed job: start from what earlier attempts reported
        self.started = time.time()
        self.stop: Optional[Stopped] = None
        self.child: Optional[subprocess.Popen] = None
        self.pump: Optional[LogPump] = None
        self.attempt_started = time.time()
        self.attempt = 0
        self.attempt_cause = ""                   # why this attempt began, for the log's marker line
        self.resumed_step: Optional[int] = None   # the step the attempt was given to resume from
        self.regressed: Optional[str] = None      # it reported a step below that: the warning
        self.sigterm_at: Optional[float] = None   # monotonic
        self.ended_at: Optional[float] = None     # monotonic: the workload's last attempt is over
        self.mirror = MirrorKeeper(job, plan, self.book)
        self.keeper = BackupKeeper(job, plan, self.book, self.progress, self._backup_disk_full,
                                   in_use=self.mirror.in_use)
        self.watch = ResourceWatch(plan, self.book)
        self.history = HistoryKeeper(job)
        self.duties = [
            Duty("progress", TICK_S, self._poll_progress),
            Duty("control", TICK_S, self._check_control),
            Duty("deadline", 1.0, self._check_deadline),
            Duty("budget", 1.0, self._check_budget),
            Duty("backup", TICK_S, lambda: self.keeper.tick(self.child.pid if self.child else None)),
            Duty("mirror", 1.0, self.mirror.tick),
            Duty("heartbeat", plan.heartbeat_every_s, self._write_heartbeat),
        ]
        self.nodes = NodeLink.for_job(job, self.book, self._run_duties,  # None: a one-node job
                                      lambda: self.stop.reason if self.stop else None)
        if self.nodes:
            self.duties.append(Duty("nodes", TICK_S, lambda: self.nodes.watch(self.child.pid if self.child else None)))

    # -- the loop -------------------------------------------------------------------------

    def run(self, secrets: Optional[Dict[str, str]] = None) -> JobState:
        """secrets: as `start` handed them over (on the agent's stdin); else secrets.json,
        read and deleted at once. Either way they live on only in this process's memory."""
        signal.signal(signal.SIGTERM, self._on_sigterm)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the SSH session that started us may end
        secrets = dict(secrets) if secrets is not None else {}
        secrets.update(self._take_secrets_file())
        self.mirror.token = secrets.pop(HUB_MIRROR_TOKEN, None)  # the agent's alone, not the workload's
        self._begin()
        try:
            verdict = self._setup(secrets) or self._run_stages(secrets)
            self.ended_at = time.monotonic()
            verdict = self._drain_mirror(verdict)
        except Exception as exc:  # an agent bug must still end the job in a known state
            self.book.event("agent-error", error=repr(exc), traceback=traceback.format_exc())
            verdict = Verdict(JobState.FAILED, f"agent error: {exc!r}", FailureClass.INFRA)
        finally:
            secrets.clear()
            self.mirror.token = None
        self.ended_at = self.ended_at or time.monotonic()
        self.book.set(verdict.state, verdict.reason, verdict.failure, exit_code=verdict.exit_code)
        self._guarded("heartbeat", self._write_heartbeat)
        deadline = time.monotonic() + 60
        while self.book.unsaved and time.monotonic() < deadline and not self._told_to_go():
            time.sleep(1)  # the final state must land (a full disk may free up)
            self.book.save()
        self._teardown_if_rented(verdict)
        return verdict.state

    def _on_sigterm(self, *_: object) -> None:
        self.sigterm_at = time.monotonic()
        self._ask_stop("agent received SIGTERM")

    def _told_to_go(self) -> bool:
        """A SIGTERM after the job ended: whatever the agent still waits for (a push, a pull
        before autodown), it exits now."""
        return self.ended_at is not None and self.sigterm_at is not None and self.sigterm_at >= self.ended_at

    def _drain_mirror(self, verdict: Verdict) -> Verdict:
        """The newest backup goes off the host before the job ends (a session about to close,
        a budget about to destroy the instance); if it cannot, the final reason says so."""
        if not self.mirror.enabled:
            return verdict
        self.keeper.wait_idle()
        self.book.set(JobState.BACKING_UP, f"pushing the newest backup to hf://{self.plan.mirror_repo}")
        wait = self.plan.mirror_wait_s
        if verdict.failure == FailureClass.BUDGET:  # the instance bills while we wait
            wait = min(wait, BUDGET_DRAIN_S)
        started = time.monotonic()
        problem = self.mirror.drain(wait, self._run_duties, TICK_S, self._told_to_go)
        self.keeper.tidy()  # nothing is being pushed now: the host keeps `keep` again
        if problem is None:
            left = max(0.0, wait - (time.monotonic() - started))
            problem = self.mirror.push_outputs(left, self._run_duties, TICK_S, self._told_to_go)
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
            unsaved=lambda: self._unsaved_results(verdict))

    def _unsaved_results(self, verdict: Verdict) -> str:
        """What goes down with the host when it is destroyed unpulled, in words."""
        count = sum(1 for _ in backup._files_under(self.job.outputs)) if self.job.outputs.is_dir() else 0
        mirrored = self.mirror.enabled and self.mirror.pending() is None and self.mirror.last is not None
        where = (f"the newest backup is on hf://{self.plan.mirror_repo}" if mirrored
                 else "no backup left the host")
        return f"outputs/ ({count} file(s)) not pulled; {where}"

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
        if isinstance(outcome, Stopped):
            return Verdict(JobState.STOPPED, outcome.reason, outcome.failure)
        if outcome != 0:
            v = judge_exit(outcome, "setup")
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
            marker.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(marker, b"")
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
            oom_before = oom_kill_count()
            outcome = self._run_child(shell_argv(stage.command), self.job.workload_log, secrets, resume)
            self.progress.poll()
            if isinstance(outcome, Stopped):
                self.book.set(JobState.BACKING_UP, "final backup before stopping")
                self._guarded("final-backup", self.keeper.finish)
                stopped = Verdict(JobState.STOPPED, outcome.reason, outcome.failure)
                return self.nodes.settle(stopped) if self.nodes else stopped
            if isinstance(outcome, Stalled):
                verdict = Verdict(JobState.FAILED, f"no progress for {outcome.quiet_s:.0f}s; stacks in "
                                  f"{outcome.stacks}", FailureClass.STALL)
            else:
                oom_after = oom_kill_count()
                verdict = judge_exit(
                    outcome, oom_killed=oom_before is not None and oom_after is not None and oom_after > oom_before,
                    disk_full=outcome != 0 and looks_disk_full(self.job.path, self._log_tail()))
            if verdict.state == JobState.SUCCEEDED:  # the newest backup is the end state
                self.book.set(JobState.BACKING_UP, "final backup of what the workload left")
                self._guarded("final-backup", self.keeper.finish)
            if self.nodes:  # one verdict for every node: a peer's failure restarts this one too
                verdict = self.nodes.settle(verdict)
            if not wants_restart(verdict, self.plan.restart_on, self.plan.restart_max, restarts):
                if verdict.state == JobState.FAILED and restarts:
                    verdict = Verdict(verdict.state, f"{verdict.reason} (gave up after {restarts} restart(s))",
                                      verdict.failure, verdict.exit_code)
                return verdict
            restarts += 1
            self.attempt += 1
            self.attempt_cause = verdict.reason
            self.book.set(JobState.RESTARTING, f"{verdict.reason}; restart {restarts} of {self.plan.restart_max} "
                          f"in {self.plan.restart_backoff_s:g}s", verdict.failure, exit_code=verdict.exit_code)
            self._idle(self.plan.restart_backoff_s)

    def _resume_point(self) -> str:
        point = (self.nodes.choose if self.nodes else resume_point.choose)(self.job, self.progress.announced, self.book)
        self.book.doc["resumed_unverified"] = not point.verified
        self.book.doc["resumed_step"] = point.step
        self.resumed_step = point.step
        return point.path

    def _run_child(self, argv: List[str], log_path: Path, secrets: Dict[str, str], resume: str,
                   watch: bool = True):
        """Runs argv in its own process group: its exit code, Stopped or Stalled."""
        log = RotatingLog(log_path, self.plan.log_max_bytes)
        if watch and self.attempt > 0:  # where one attempt's output ends and the next begins
            self._guarded("log-marker", lambda: log.write(
                f"--- attempt {self.attempt}, after {self.attempt_cause or 'a restart'} ---\n".encode()))
        clear_listeners(self.job)
        if watch:
            self.progress.mark()
        self.attempt_started = time.time()
        self.child = subprocess.Popen(
            argv, cwd=str(self.job.code), env=self._child_env(secrets, resume),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.book.doc["workload_pgid"] = self.child.pid
        self.book.event("child-started", pid=self.child.pid, log=log_path.name, attempt=self.attempt)
        from_log = LogProgress(self.plan.progress_pattern, self.job.progress) \
            if watch and self.plan.progress_pattern else None
        self.pump = LogPump(self.child.stdout, log, from_log.feed if from_log else None)
        try:
            while True:
                self._run_duties()
                rc = self.child.poll()
                if rc is not None:
                    return rc
                if self.stop:
                    self._terminate(self.child)
                    return self.stop
                if watch:
                    quiet = self._quiet_for()
                    if quiet > self.plan.stall_after_s:
                        return self._stalled(quiet)
                time.sleep(TICK_S)
        finally:
            self._kill_group(self.child.pid, signal.SIGKILL)  # leftovers of the group
            self.pump.join()
            log.close()
            self.child = None

    def _quiet_for(self) -> float:
        """Seconds without a sign of life: progress lines if the workload reports them, else
        log output, counted from the attempt's start."""
        if self.progress.last_at and self.progress.last_at > self.attempt_started:
            last = self.progress.last_at
        elif self.progress.last_at is None and self.pump and self.pump.last_output_at:
            last = self.pump.last_output_at
        else:
            last = self.attempt_started
        return time.time() - last

    def _stalled(self, quiet: float) -> Stalled:
        assert self.child is not None
        dest = self.job.stacks(self.attempt)
        how = self._guarded("stacks", lambda: dump_stacks(self.job, self.child.pid, dest), "none")
        self.book.event("stalled", quiet_s=round(quiet, 1), stacks=dest.name, how=how)
        self._kill_group(self.child.pid, signal.SIGKILL)
        self.child.wait()
        return Stalled(quiet, f"logs/{dest.name}")

    def _terminate(self, child: subprocess.Popen) -> None:
        """SIGTERM to the group, stop.grace_s to finish (duties go on), then SIGKILL."""
        self.book.event("terminating", pid=child.pid, grace_s=self.plan.grace_s)
        self._kill_group(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.plan.grace_s
        while child.poll() is None and time.monotonic() < deadline:
            self._run_duties()
            time.sleep(TICK_S)
        if child.poll() is None:
            self.book.event("killed", pid=child.pid, reason="grace period over")
            self._kill_group(child.pid, signal.SIGKILL)
            child.wait()

    def _idle(self, seconds: float) -> None:
        """Waits between attempts, duties running, a stop request cutting it short."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self.stop:
            self._run_duties()
            time.sleep(TICK_S)

    @staticmethod
    def _kill_group(pgid: int, sig: int) -> None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _run_duties(self) -> None:
        now = time.monotonic()
        for duty in self.duties:
            if now < duty.next_at:
                continue
            duty.next_at = now + duty.every_s
            self._guarded(duty.name, duty.fn)

    def _guarded(self, name: str, fn: Callable[[], object], default: object = None) -> object:
        """fn's result; if it raises, an event and `default`: a duty never kills the agent."""
        try:
            return fn()
        except Exception as exc:
            self.book.event("duty-failed", duty=name, error=repr(exc))
            return default

    # -- duties ---------------------------------------------------------------------------

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
        if at is not None and time.time() >= at - self.plan.deadline_margin_s:
            self._ask_stop(f"deadline: stopping {self.plan.deadline_margin_s:.0f}s before the time limit "
                           "with a final backup; `tether resume` continues", FailureClass.DEADLINE)

    def spend(self) -> Optional[float]:
        p = self.plan
        if not p.price_per_hour or not p.instance_created:
            return None
        return round(p.price_per_hour * (time.time() - p.instance_created) / 3600.0, 4)

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
        child, pump = self.child, self.pump
        resources = host_sample(self.job.path)
        rss_mb = process_tree_rss_mb(child.pid if child else None)
        warnings = self.watch.check(resources) + self.keeper.check_kept() + ([self.regressed] if self.regressed else [])
        if pump and pump.dropped_bytes:
            warnings.append(f"{pump.dropped_bytes} bytes of the workload's output were dropped: "
                            f"the log could not be written ({pump.drop_reason})")
        write_json_atomic(self.job.heartbeat, {
            "time": time.time(),
            "state": self.book.doc.get("state"),
            "agent_pid": os.getpid(),
            "workload_pid": child.pid if child else None,
            "attempt": self.attempt,
            "uptime_s": round(time.time() - self.started, 1),
            "agent_cpu_s": round(time.process_time(), 3),  # what supervising has cost so far
            "step": self.progress.step,
            "metrics": self.progress.metrics,
            "total_steps": self.progress.total,
            "steps_per_s": self.progress.steps_per_s,
            "eta_s": self.progress.eta_s,
            "last_progress_at": self.progress.last_at,
            "last_output_at": pump.last_output_at if pump else None,
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

    # -- environment and secrets ----------------------------------------------------------

    def _take_secrets_file(self) -> Dict[str, str]:
        """secrets.json (the Kaggle kernel and older launchers write one), deleted at once."""
        doc, _ = read_json_object(self.job.secrets)
        try:
            os.unlink(self.job.secrets)
        except FileNotFoundError:
            pass
        return {str(k): str(v) for k, v in (doc or {}).items()}

    def _child_env(self, secrets: Dict[str, str], resume: str) -> Dict[str, str]:
        env = dict(os.environ)
        env.update(self.plan.env)
        env.update(secrets)
        job = self.job
        env.update(
            TETHER_JOB_ID=self.plan.job_id,
            TETHER_JOB_DIR=str(job.path),
            TETHER_CHECKPOINT_DIR=str(job.checkpoints),
            TETHER_OUTPUT_DIR=str(job.outputs),
            TETHER_PROGRESS_FILE=str(job.progress),
            TETHER_RESUME_FROM=resume,
            TETHER_ATTEMPT=str(self.attempt),
            PYTHONUNBUFFERED=env.get("PYTHONUNBUFFERED", "1"),
        )
        env.update(self.nodes.env() if self.nodes else {})
        # The shipped runtime on the path, so `from agent import progress` just works.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(self.runtime_dir), env.get("PYTHONPATH")) if p)
        front = ([str(self.job.python_shims)] if self.plan.python else []) + self.plan.path_prepend
        if front:
            env["PATH"] = os.pathsep.join(front + [env.get("PATH", "")])
        return env


def write_python_shims(folder: Path, python: str) -> None:
    """`python`, `python3`, `pip` and `pip3` that run host.python, as a venv's activation would:
    a bare `python` in run: or setup: must not find another interpreter (one without torch)."""
    folder.mkdir(parents=True, exist_ok=True)
    quoted = shlex.quote(python)
    for name, tail in (("python", ""), ("python3", ""), ("pip", " -m pip"), ("pip3", " -m pip")):
        write_bytes_atomic(folder / name, f'#!/bin/sh\nexec {quoted}{tail} "$@"\n'.encode(), mode=0o755)


def runtime_dir() -> Path:
    """The folder this agent package was loaded from (runtime/<version>/)."""
    return Path(__file__).resolve().parent.parent


def main_run(job_path: str, secrets_on_stdin: bool = False) -> int:
    from .book import AgentLock

    keep_memory_private()
    secrets: Optional[Dict[str, str]] = None
    if secrets_on_stdin:  # from `start`, through a pipe: never a file
        raw = sys.stdin.buffer.read()
        secrets = {str(k): str(v) for k, v in (json.loads(raw) if raw.strip() else {}).items()}
    job = JobDir(Path(job_path).resolve())
    job.make_dirs()
    lock = AgentLock(job)
    if not lock.acquire():
        print(f"another agent is already running job {job.path}", file=sys.stderr)
        return 3
    plan = RunPlan.load(job)
    state = Supervisor(job, plan, runtime_dir()).run(secrets)
    return 0 if state == JobState.SUCCEEDED else 1
