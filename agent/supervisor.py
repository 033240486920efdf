"""The monitor loop: the only code that changes a job's state.

Duties (heartbeat, progress polling) run on their own intervals inside the loop and only
report; a duty that raises becomes an event, never a dead agent.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

from .book import StatusBook
from .files import read_json, write_bytes_atomic, write_json_atomic
from .logfile import LogPump, RotatingLog
from .paths import JobDir
from .plan import RunPlan
from .progress_reader import ProgressReader
from .protocol import FailureClass, JobState
from .resources import host_sample, process_tree_rss_mb

TICK_S = 0.2


@dataclass
class Duty:
    name: str
    every_s: float
    fn: Callable[[], None]
    next_at: float = 0.0


@dataclass(frozen=True)
class Verdict:
    state: JobState
    reason: str
    failure: Optional[FailureClass] = None
    exit_code: Optional[int] = None


def judge_exit(returncode: int, what: str = "workload") -> Verdict:
    """A finished child's exit status, as the job's final state."""
    if returncode == 0:
        return Verdict(JobState.SUCCEEDED, f"{what} exited with code 0", None, 0)
    if returncode < 0:
        sig = signal.Signals(-returncode).name
        hint = " (out of memory?)" if sig == "SIGKILL" else ""
        return Verdict(JobState.FAILED, f"{what} killed by {sig}{hint}", FailureClass.INFRA, returncode)
    return Verdict(JobState.FAILED, f"{what} exited with code {returncode}", FailureClass.USER, returncode)


def shell_argv(command: str) -> List[str]:
    shell = shutil.which("bash") or "/bin/sh"
    return [shell, "-c", command]


class Supervisor:
    def __init__(self, job: JobDir, plan: RunPlan, runtime_dir: Path) -> None:
        self.job, self.plan, self.runtime_dir = job, plan, runtime_dir
        self.book = StatusBook(job)
        self.progress = ProgressReader(job.progress)
        self.started = time.time()
        self.stop_reason: Optional[str] = None
        self.child: Optional[subprocess.Popen] = None
        self.pump: Optional[LogPump] = None
        self.attempt = 0
        self.duties = [
            Duty("progress", TICK_S, self.progress.poll),
            Duty("control", TICK_S, self._check_control),
            Duty("heartbeat", plan.heartbeat_every_s, self._write_heartbeat),
        ]

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> JobState:
        signal.signal(signal.SIGTERM, lambda *_: self._ask_stop("agent received SIGTERM"))
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the SSH session that started us may end
        secrets = self._take_secrets()
        try:
            verdict = self._setup(secrets) or self._run_workload(secrets)
        except Exception as exc:  # an agent bug must still end the job in a known state
            self.book.event("agent-error", error=repr(exc), traceback=traceback.format_exc())
            verdict = Verdict(JobState.FAILED, f"agent error: {exc!r}", FailureClass.INFRA)
        finally:
            self._forget_secrets()
        self.book.set(verdict.state, verdict.reason, verdict.failure, exit_code=verdict.exit_code)
        self._write_heartbeat()
        return verdict.state

    def _setup(self, secrets: Dict[str, str]) -> Optional[Verdict]:
        """Runs the spec's setup once per (text, inputs); a Verdict only if the job must end."""
        if not self.plan.setup:
            return None
        marker = self.job.root.setup_marker(self.plan.setup_key or "unkeyed")
        if marker.exists():
            self.book.event("setup-skipped", reason="setup and the files it names are unchanged")
            return None
        self.book.set(JobState.SETUP, "running setup")
        rc = self._run_child(shell_argv(self.plan.setup), self.job.setup_log, secrets)
        if rc is None:
            return Verdict(JobState.STOPPED, self.stop_reason or "stopped during setup")
        if rc != 0:
            v = judge_exit(rc, "setup")
            return Verdict(v.state, v.reason + "; see logs/setup.log", v.failure, v.exit_code)
        marker.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(marker, self.plan.setup.encode())
        self.book.event("setup-done")
        return None

    def _run_workload(self, secrets: Dict[str, str]) -> Verdict:
        if self.stop_reason:
            return Verdict(JobState.STOPPED, self.stop_reason)
        self.book.set(JobState.RUNNING, "workload started", attempt=self.attempt)
        rc = self._run_child(shell_argv(self.plan.command), self.job.workload_log, secrets)
        self.progress.poll()
        if rc is None:
            return Verdict(JobState.STOPPED, self.stop_reason or "stopped")
        return judge_exit(rc)

    def _run_child(self, argv: List[str], log_path: Path, secrets: Dict[str, str]) -> Optional[int]:
        """Runs argv in its own process group until it exits (its code) or a stop (None)."""
        log = RotatingLog(log_path, self.plan.log_max_bytes)
        self.child = subprocess.Popen(
            argv, cwd=str(self.job.code), env=self._child_env(secrets),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.book.event("child-started", pid=self.child.pid, log=log_path.name)
        self.pump = LogPump(self.child.stdout, log)
        try:
            while True:
                self._run_duties()
                rc = self.child.poll()
                if rc is not None:
                    return rc
                if self.stop_reason:
                    self._terminate(self.child)
                    return None
                time.sleep(TICK_S)
        finally:
            self._kill_group(self.child.pid, signal.SIGKILL)  # leftovers of the group
            self.pump.join()
            log.close()
            self.child = None

    def _terminate(self, child: subprocess.Popen) -> None:
        """SIGTERM to the group, stop.grace_s to finish (heartbeats go on), then SIGKILL."""
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
            try:
                duty.fn()
            except Exception as exc:
                self.book.event("duty-failed", duty=duty.name, error=repr(exc))

    # -- duties ---------------------------------------------------------------------------

    def _ask_stop(self, reason: str) -> None:
        if not self.stop_reason:
            self.stop_reason = reason

    def _check_control(self) -> None:
        if self.job.stop_request.exists():
            req = read_json(self.job.stop_request) or {}
            self._ask_stop(req.get("reason") or "stop requested")

    def _write_heartbeat(self) -> None:
        child = self.child
        pump = self.pump
        write_json_atomic(self.job.heartbeat, {
            "time": time.time(),
            "state": self.book.doc.get("state"),
            "agent_pid": os.getpid(),
            "workload_pid": child.pid if child else None,
            "attempt": self.attempt,
            "uptime_s": round(time.time() - self.started, 1),
            "step": self.progress.step,
            "metrics": self.progress.metrics,
            "last_progress_at": self.progress.last_at,
            "last_output_at": pump.last_output_at if pump else None,
            "workload_rss_mb": process_tree_rss_mb(child.pid if child else None),
            "resources": host_sample(self.job.path),
        })

    # -- environment and secrets ----------------------------------------------------------

    def _take_secrets(self) -> Dict[str, str]:
        return {str(k): str(v) for k, v in (read_json(self.job.secrets) or {}).items()}

    def _forget_secrets(self) -> None:
        try:
            os.unlink(self.job.secrets)
        except FileNotFoundError:
            pass

    def _child_env(self, secrets: Dict[str, str]) -> Dict[str, str]:
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
            TETHER_RESUME_FROM="",
            TETHER_ATTEMPT=str(self.attempt),
            PYTHONUNBUFFERED=env.get("PYTHONUNBUFFERED", "1"),
        )
        # The shipped runtime on the path, so `from agent import progress` just works.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(self.runtime_dir), env.get("PYTHONPATH")) if p)
        if self.plan.path_prepend:
            env["PATH"] = os.pathsep.join(self.plan.path_prepend + [env.get("PATH", "")])
        return env


def runtime_dir() -> Path:
    """The folder this agent package was loaded from (runtime/<version>/)."""
    return Path(__file__).resolve().parent.parent


def main_run(job_path: str) -> int:
    from .book import AgentLock

    job = JobDir(Path(job_path).resolve())
    job.make_dirs()
    lock = AgentLock(job)
    if not lock.acquire():
        print(f"another agent is already running job {job.path}", file=sys.stderr)
        return 3
    plan = RunPlan.load(job)
    state = Supervisor(job, plan, runtime_dir()).run()
    return 0 if state == JobState.SUCCEEDED else 1
