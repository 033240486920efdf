"""The monitor loop with a fake clock and scripted attempts: no processes, no sleeping, hours
of a job in milliseconds. (The same duties run for real in test_keepalive.py.)"""

from __future__ import annotations

import json
import signal
from dataclasses import replace
from pathlib import Path
from typing import List, Optional

import pytest

from agent.backup_keeper import BackupKeeper
from agent.book import StatusBook
from agent.clock import FakeClock
from agent.paths import JobDir
from agent.plan import RunPlan
from agent.policy import Act, Observation, Verdict, after_attempt, judge
from agent.progress_reader import ProgressReader
from agent.protocol import FailureClass, JobFacts, JobPayload, JobState
from agent.supervisor import Supervisor


# -- scripted parts -----------------------------------------------------------------------

class ScriptedAttempt:
    """A workload that lives only on the fake clock. It exits with `rc` after `exit_after_s`
    (never, if None); prints a line every `speaks_every_s` until `speaks_until_s`; reports a
    progress step every `reports_every_s` until `reports_until_s`; exits 0 on SIGTERM unless
    told to ignore it."""

    def __init__(self, clock: FakeClock, progress: Path, rc: int = 0, exit_after_s: Optional[float] = None,
                 speaks_every_s: Optional[float] = None, speaks_until_s: float = float("inf"),
                 reports_every_s: Optional[float] = None,
                 reports_until_s: float = float("inf"), obeys_sigterm: bool = True) -> None:
        self.clock, self.progress_path = clock, progress
        self.rc_when_done, self.exit_after_s = rc, exit_after_s
        self.speaks_every_s, self.speaks_until_s = speaks_every_s, speaks_until_s
        self.obeys_sigterm = obeys_sigterm
        self.reports_every_s, self.reports_until_s = reports_every_s, reports_until_s
        self.rc: Optional[int] = None
        self.signals: List[int] = []
        self.closed = False
        self.reported = 0
        self.dropped = ""

    def begin(self, started: float) -> "ScriptedAttempt":
        self.started = started
        self.pid = 4_000_000 + int(started)  # above pid_max: never a real process
        return self

    def _age(self) -> float:
        return self.clock.monotonic() - self.started

    def poll(self) -> Optional[int]:
        if self.rc is None and self.exit_after_s is not None and self._age() >= self.exit_after_s:
            self.rc = self.rc_when_done
        if self.rc is None and self.reports_every_s:
            due = int(min(self._age(), self.reports_until_s) // self.reports_every_s)
            with open(self.progress_path, "a") as f:
                for step in range(self.reported, due):
                    f.write(json.dumps({"step": step, "time": self.clock.time(), "loss": 1.0}) + "\n")
            self.reported = max(self.reported, due)
        return self.rc

    @property
    def last_output_at(self) -> Optional[float]:
        if not self.speaks_every_s or self._age() < self.speaks_every_s:
            return None
        spoke_until = min(self._age(), self.speaks_until_s)
        return self.clock.offset + self.started + (spoke_until // self.speaks_every_s) * self.speaks_every_s

    def signal(self, sig: int) -> None:
        self.signals.append(sig)
        if sig == signal.SIGTERM and self.obeys_sigterm and self.rc is None:
            self.rc = 0

    def kill(self) -> Optional[int]:
        self.signals.append(signal.SIGKILL)
        if self.rc is None:
            self.rc = -signal.SIGKILL
        return self.rc

    def close(self) -> None:
        self.closed = True


class Script:
    """start_attempt for the Supervisor: hands out the scripted attempts in turn."""

    def __init__(self, *attempts: ScriptedAttempt) -> None:
        self.attempts = list(attempts)
        self.started: List[ScriptedAttempt] = []

    def __call__(self, argv, cwd, env, log, on_output, started) -> ScriptedAttempt:
        a = self.attempts[len(self.started)].begin(started)
        self.started.append(a)
        log.close()
        return a


class FakeProc:
    """A copier or pusher process on the fake clock: answers `answer` after `takes_s`."""

    def __init__(self, clock: FakeClock, takes_s: float, answer: dict) -> None:
        self.clock, self.end, self.answer = clock, clock.monotonic() + takes_s, answer
        self.killed = False
        self.stdin = _Sink()
        self.stdout = _Source(self)

    def poll(self) -> Optional[int]:
        return 0 if self.killed or self.clock.monotonic() >= self.end else None

    def communicate(self, timeout=None):
        return self.stdout.read(), b""

    def kill(self) -> None:
        self.killed = True

    def wait(self, timeout=None) -> int:
        return 0


class _Sink:
    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


class _Source:
    def __init__(self, proc: FakeProc) -> None:
        self.proc = proc

    def read(self) -> bytes:
        return b"" if self.proc.killed else json.dumps(self.proc.answer).encode() + b"\n"

    def close(self) -> None:
        pass


def make_plan(**over) -> RunPlan:
    """The defaults of a job payload (agent/payload.py), as the agent reads them, then `over`."""
    payload = JobPayload(spec={"name": "t"}, job=JobFacts(id="j1", project="p", command="train"))
    base = dict(heartbeat_every_s=60.0, stall_after_s=900.0, restart_backoff_s=30.0, grace_s=120.0)
    return replace(RunPlan.from_payload(payload, started=0.0), **{**base, **over})


@pytest.fixture
def job(tmp_path) -> JobDir:
    j = JobDir(tmp_path / "jobs" / "j1")
    j.make_dirs()
    return j


def supervisor(job: JobDir, clock: FakeClock, script: Script, **plan) -> Supervisor:
    return Supervisor(job, make_plan(**plan), job.path, clock=clock, start_attempt=script)


def events(job: JobDir, kind: Optional[str] = None) -> List[dict]:
    evs = [json.loads(x) for x in job.events.read_text().splitlines()]
    return [e for e in evs if kind is None or e["event"] == kind]


def states(job: JobDir) -> List[str]:
    return [e["state"] for e in events(job, "state")]


# -- judge: pure ---------------------------------------------------------------------------

def test_judge_an_exit_before_a_stop_before_silence():
    assert judge(Observation(returncode=-9, stop_reason="stop", quiet_s=1e6), 10).act is Act.ENDED
    assert judge(Observation(stop_reason="stop", quiet_s=1e6), 10).act is Act.STOP
    assert judge(Observation(quiet_s=11), 10).act is Act.STALLED
    assert judge(Observation(quiet_s=11, watched=False), 10).act is Act.WAIT
    assert judge(Observation(quiet_s=10), 10).act is Act.WAIT


def test_judge_classes_a_failure():
    assert judge(Observation(returncode=-9), 10).verdict.failure == FailureClass.INFRA
    assert judge(Observation(returncode=1, oom_killed=True), 10).verdict.failure == FailureClass.INFRA
    assert judge(Observation(returncode=1), 10).verdict.failure == FailureClass.USER
    assert judge(Observation(returncode=0, oom_killed=True), 10).verdict.state == JobState.SUCCEEDED
    stalled = judge(Observation(quiet_s=30), 10).verdict
    assert stalled.failure == FailureClass.STALL and stalled.reason == "no progress for 30s"


def test_after_attempt_restarts_by_class_then_gives_up():
    infra = Verdict(JobState.FAILED, "killed", FailureClass.INFRA, -9)
    on = (FailureClass.INFRA,)
    assert after_attempt(infra, on, 2, 0) is None and after_attempt(infra, on, 2, 1) is None
    assert "gave up after 2 restart(s)" in after_attempt(infra, on, 2, 2).reason
    user = Verdict(JobState.FAILED, "exit 1", FailureClass.USER, 1)
    assert after_attempt(user, on, 2, 0) == user


# -- the loop ------------------------------------------------------------------------------

def test_crash_restarts_then_gives_up_after_restart_max(job):
    clock = FakeClock()
    crashes = [ScriptedAttempt(clock, job.progress, rc=-9, exit_after_s=5) for _ in range(3)]
    script = Script(*crashes)
    sup = supervisor(job, clock, script, restart_max=2)
    verdict = sup.supervise({})
    assert verdict.state == JobState.FAILED and verdict.failure == FailureClass.INFRA
    assert "killed by SIGKILL" in verdict.reason and "gave up after 2 restart(s)" in verdict.reason
    assert len(script.started) == 3 and all(a.closed for a in script.started)
    assert states(job).count("RESTARTING") == 2 and sup.attempt == 2
    assert [e["attempt"] for e in events(job, "child-started")] == [0, 1, 2]
    assert 3 * 5 + 2 * 30 <= clock.slept < 3 * 5 + 2 * 30 + 5  # the backoffs, waited on the clock


def test_one_crash_is_one_restart_however_long_the_restart_takes(job):
    """A crash is one restart, however long the restart's resume and start take (a loaded
    machine): the new attempt's silence counts from its own start, and is no stall before
    stall_after_s. (The real "second restart" was a signal during the workload's exit: see
    test_agent's test_a_signal_request_while_the_workload_exits_does_not_kill_it.)"""
    clock = FakeClock()
    script = Script(ScriptedAttempt(clock, job.progress, rc=-9, exit_after_s=20, reports_every_s=1),
                    ScriptedAttempt(clock, job.progress, rc=0, exit_after_s=200, reports_every_s=1))
    sup = supervisor(job, clock, script, restart_max=2, stall_after_s=30)
    verdict = sup.supervise({})
    assert verdict.state == JobState.SUCCEEDED, verdict
    assert states(job).count("RESTARTING") == 1 and sup.attempt == 1


@pytest.mark.parametrize("reports", [True, False])
def test_stall_is_judged_on_progress_if_reported_else_on_output(job, reports):
    clock = FakeClock()
    # Reports progress for 100 s (if it reports), prints a line every 5 s for 300 s, then hangs.
    hangs = ScriptedAttempt(clock, job.progress, speaks_every_s=5, speaks_until_s=300,
                            reports_every_s=1 if reports else None, reports_until_s=100)
    script = Script(hangs)
    sup = supervisor(job, clock, script, restart_max=0, stall_after_s=60)
    verdict = sup.supervise({})
    assert verdict.failure == FailureClass.STALL and verdict.state == JobState.FAILED
    stalled = events(job, "stalled")[0]
    assert 60 < stalled["quiet_s"] <= 61
    # Progress stopped at 100 s: stalled at 160 s, output notwithstanding. Without progress
    # the output counts: it stopped at 300 s, so 360 s.
    expected = 160 if reports else 360
    assert expected < clock.now - 1000 <= expected + 1
    assert signal.SIGKILL in hangs.signals and (job.logs / "stacks-attempt0.txt").exists()


def test_stall_counts_from_the_attempts_start_when_nothing_comes(job):
    clock = FakeClock()
    script = Script(ScriptedAttempt(clock, job.progress), ScriptedAttempt(clock, job.progress))
    sup = supervisor(job, clock, script, restart_max=1, stall_after_s=60, restart_backoff_s=10)
    verdict = sup.supervise({})
    assert verdict.failure == FailureClass.STALL and "gave up after 1 restart(s)" in verdict.reason
    assert [round(e["quiet_s"]) for e in events(job, "stalled")] == [60, 60]


def test_deadline_stops_with_a_final_backup(job):
    clock = FakeClock()
    runs = ScriptedAttempt(clock, job.progress, reports_every_s=1)
    script = Script(runs)
    sup = supervisor(job, clock, script, deadline_at=clock.time() + 600, deadline_margin_s=60)
    finished = []
    sup.keeper.finish = lambda wait: finished.append((clock.now, states(job)[-1]))
    verdict = sup.supervise({})
    assert verdict.state == JobState.STOPPED and verdict.failure == FailureClass.DEADLINE
    assert runs.signals == [signal.SIGTERM]  # it exited within its grace: no SIGKILL
    assert len(finished) == 1 and finished[0][1] == "BACKING_UP"
    assert 540 <= finished[0][0] - 1000 <= 542  # 60 s before the limit, within a tick or two


def test_a_workload_ignoring_sigterm_is_killed_after_its_grace(job):
    clock = FakeClock()
    stubborn = ScriptedAttempt(clock, job.progress, reports_every_s=1, obeys_sigterm=False)
    sup = supervisor(job, clock, Script(stubborn), grace_s=120)
    sup.keeper.finish = lambda wait: None
    clock.at(50, lambda: job.stop_request.write_text(json.dumps({"reason": "user asked"})))
    verdict = sup.supervise({})
    assert verdict.state == JobState.STOPPED and verdict.reason == "user asked"
    assert stubborn.signals == [signal.SIGTERM, signal.SIGKILL]
    assert 170 <= clock.now - 1000 <= 172
    assert events(job, "killed")[0]["reason"] == "grace period over"


# -- backups and the mirror on the clock ---------------------------------------------------

def announce(job: JobDir, step: int) -> None:
    (job.checkpoints / f"step-{step}").mkdir(parents=True, exist_ok=True)
    (job.checkpoints / f"step-{step}" / "state.json").write_text("{}")
    with open(job.progress, "a") as f:
        f.write(json.dumps({"step": step, "checkpoint": f"step-{step}"}) + "\n")


def test_a_backup_slower_than_its_interval_is_never_doubled(job):
    clock = FakeClock()
    copiers: List[FakeProc] = []
    started_at: List[float] = []

    def spawn(argv):
        step = int(argv[argv.index(str(job.path)) + 2])
        copiers.append(FakeProc(clock, 25, {"ok": True, "backup": {"name": f"b-step{step}", "step": step, "size": 1}}))
        started_at.append(clock.now - 1000)
        return copiers[-1]

    progress = ProgressReader(job.progress)
    keeper = BackupKeeper(job, make_plan(backup_every_s=10.0), StatusBook(job), progress, lambda e: None,
                          clock=clock, spawn=spawn)
    for t in range(0, 71):  # a checkpoint announced every second, the loop ticking each second
        announce(job, t)
        progress.poll()
        keeper.tick(pgid=1234)
        assert len([c for c in copiers if c.poll() is None]) <= 1  # one copy at a time
        clock.advance(1)
    # Every 10 s, but a copy takes 25 s: the next starts on the tick after one lands (it is
    # overdue), never two at once and never a queue of missed ones.
    assert started_at == [10, 36, 62]
    assert [d["step"] for d in events(job, "backup-done")] == [10, 36]
    assert keeper.summary()["in_progress"] is True


def test_a_mirror_push_outliving_the_job_is_cut_at_its_wait_and_said(job):
    clock = FakeClock()
    pushers: List[FakeProc] = []

    def spawn(argv, log_path):
        pushers.append(FakeProc(clock, 10_000, {"ok": True, "remote": []}))
        return pushers[-1]

    (job.backups / "20260101-000000-step5").mkdir(parents=True)
    (job.backups / "20260101-000000-step5" / "MANIFEST.json").write_text(json.dumps({"files": {}, "step": 5}))
    script = Script(ScriptedAttempt(clock, job.progress, exit_after_s=10))
    sup = supervisor(job, clock, script, mirror_repo="me/r", mirror_wait_s=600)
    sup.mirror.spawn_process = spawn
    sup.mirror.pending = lambda: type("B", (), {"name": "20260101-000000-step5", "step": 5})()
    sup.mirror.token = "t"
    sup.keeper.finish = lambda wait: None
    verdict = sup.supervise({"HF_TOKEN": "x"})
    assert verdict.state == JobState.SUCCEEDED
    assert "did not reach hf://me/r" in verdict.reason
    assert pushers and pushers[0].killed
    assert 600 <= clock.now - 1000 - 10 <= 602  # waited mirror_wait_s, not for ever
    assert events(job, "mirror-incomplete")


def test_a_mirror_push_that_lands_during_the_wait_ends_it(job):
    clock = FakeClock()
    sup = supervisor(job, clock, Script(ScriptedAttempt(clock, job.progress, exit_after_s=10)),
                     mirror_repo="me/r", mirror_wait_s=600)
    landed = {"at": None}

    def spawn(argv, log_path):
        return FakeProc(clock, 40, {"ok": True, "remote": ["b"]})

    sup.mirror.spawn_process = spawn
    backups = {"pending": True}
    orig_poll = sup.mirror._poll

    def poll(wait=False):
        orig_poll(wait)
        if sup.mirror.pusher is None and landed["at"] is None:
            landed["at"] = clock.now
            backups["pending"] = False

    sup.mirror._poll = poll
    sup.mirror.pending = lambda: (type("B", (), {"name": "b", "step": 5})() if backups["pending"] else None)
    sup.mirror.token = "t"
    sup.keeper.finish = lambda wait: None
    verdict = sup.supervise({})
    assert verdict.state == JobState.SUCCEEDED and "did not reach" not in verdict.reason
    assert landed["at"] is not None and landed["at"] - 1000 < 10 + 60
