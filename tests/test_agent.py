"""The agent on its own: exit verdicts, progress reading, logs, signals to a real agent."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import wait_for

from agent.book import AgentLock, agent_alive
from agent.files import write_json_atomic
from agent.hostops import create_job, logs, start
from agent.job_status import status
from agent.logfile import RotatingLog
from agent.paths import JobDir, Root
from agent.progress_reader import ProgressReader
from agent.protocol import FailureClass, JobState
from agent.policy import judge_exit


def test_judge_exit_classes():
    assert judge_exit(0).state == JobState.SUCCEEDED
    v = judge_exit(3)
    assert (v.state, v.failure, v.exit_code) == (JobState.FAILED, FailureClass.USER, 3)
    v = judge_exit(-9)  # a SIGKILL alone is no evidence of the OOM killer
    assert v.failure == FailureClass.INFRA and "SIGKILL" in v.reason and "memory" not in v.reason
    assert "out-of-memory killer" in judge_exit(-9, oom_killed=True).reason
    assert "SIGSEGV" in judge_exit(-11).reason


def test_progress_reader_handles_partial_lines(tmp_path):
    path = tmp_path / "progress.jsonl"
    r = ProgressReader(path)
    assert not r.poll()
    with open(path, "ab") as f:
        f.write(b'{"step": 1, "loss": 0.5}\n{"step": 2, "lo')
    assert r.poll() and r.step == 1 and r.metrics == {"loss": 0.5}
    with open(path, "ab") as f:
        f.write(b'ss": 0.4}\nnot json\n{"step": 2, "checkpoint": "step-2"}\n')
    assert r.poll()
    assert r.step == 2 and r.metrics == {"loss": 0.4} and r.last_checkpoint == "step-2"


def test_rotating_log_keeps_recent_output(tmp_path):
    log = RotatingLog(tmp_path / "w.log", max_bytes=100, keep=2)
    for i in range(30):
        log.write(f"line {i:02d}\n".encode())
    log.close()
    assert (tmp_path / "w.log").stat().st_size <= 100
    assert (tmp_path / "w.log.1").exists() and (tmp_path / "w.log.2").exists()
    assert not (tmp_path / "w.log.3").exists()
    assert (tmp_path / "w.log").read_text().endswith("line 29\n")


def test_logs_follow_survives_rotation_and_ends_with_the_job(tmp_path):
    job = JobDir(tmp_path / "jobs" / "j1")
    job.make_dirs()
    write_json_atomic(job.state, {"state": "RUNNING"})
    lock = AgentLock(job)
    assert lock.acquire() and agent_alive(job)
    out = io.BytesIO()
    t = threading.Thread(target=logs, args=(job, "workload", 10, True, out, 0.05))
    log = RotatingLog(job.workload_log, max_bytes=40)
    t.start()
    for i in range(12):
        log.write(f"line {i:02d}\n".encode())
        time.sleep(0.06)
    write_json_atomic(job.state, {"state": "SUCCEEDED"})
    t.join(10)
    assert not t.is_alive()
    assert "line 11" in out.getvalue().decode()


def _job(tmp_path, command, heartbeat=0.2, grace=5.0):
    root = Root(tmp_path / "root")
    root.code("p").mkdir(parents=True, exist_ok=True)
    payload = {"spec": {"name": "t", "heartbeat": {"every_s": heartbeat}, "stop": {"grace_s": grace}},
               "job": {"id": "j1", "project": "p", "command": command}, "secrets": {}}
    created = create_job(root, "p", "j1", payload)
    return JobDir(created["job_dir"])


def test_sigterm_to_the_agent_stops_the_job(tmp_path):
    """What a preempting host does: SIGTERM the agent; the workload gets it too, then STOPPED."""
    job = _job(tmp_path, "trap 'echo got-term; exit 0' TERM; while true; do sleep 0.1; done")
    assert start(job)["started"]
    wait_for(lambda: status(job)["state"] == "RUNNING", 10, what="RUNNING")
    time.sleep(0.3)
    pid = json.loads(job.state.read_text())["agent_pid"]
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: status(job)["state"] == "STOPPED", 10, what="STOPPED")
    assert status(job)["reason"] == "agent received SIGTERM"
    assert "got-term" in job.workload_log.read_text()
    wait_for(lambda: not agent_alive(job), 5, what="the agent to exit")


def test_heartbeat_reports_progress_and_resources(tmp_path):
    script = ("import time; from agent import progress\n"
              "for i in range(40):\n    progress.report(i, acc=i/40); time.sleep(0.05)\n")
    (tmp_path / "root" / "code" / "p").mkdir(parents=True)
    (tmp_path / "root" / "code" / "p" / "s.py").write_text(script)
    job = _job(tmp_path, f"{sys.executable} s.py")
    hb_times = []
    assert start(job)["started"]

    def heartbeat_moves():
        hb = json.loads(job.heartbeat.read_text()) if job.heartbeat.exists() else {}
        if hb.get("time") and hb["time"] not in hb_times:
            hb_times.append(hb["time"])
        return len(hb_times) >= 3

    wait_for(heartbeat_moves, 10, every=0.05, what="three heartbeats")
    hb = json.loads(job.heartbeat.read_text())
    assert hb["state"] == "RUNNING" and hb["workload_pid"] and hb["agent_pid"]
    assert {"disk_free_gb", "ram_total_gb", "ram_used_gb"} <= set(hb["resources"])
    wait_for(lambda: status(job)["state"] == "SUCCEEDED", 20, what="SUCCEEDED")
    st = status(job)
    assert st["step"] == 39 and st["metrics"] == {"acc": 39 / 40}


def test_a_second_agent_for_the_same_job_refuses(tmp_path):
    job = _job(tmp_path, "sleep 5")
    assert start(job)["started"]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    r = subprocess.run([sys.executable, "-m", "agent", "run", str(job.path)], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 3 and "already running" in r.stderr
    os.kill(json.loads(job.state.read_text())["agent_pid"], signal.SIGTERM)


def test_a_framed_tail_names_its_place_so_a_reconnect_goes_on_right_after_it(tmp_path):
    """The tail `tether logs -f` starts with carries the log's inode and offset: a connection
    dropped during it resumes after the last line received, neither repeating the tail nor
    skipping what was written meanwhile."""
    from agent import logread

    log = tmp_path / "workload.log"
    log.write_bytes(b"".join(b"line %d\n" % i for i in range(10)))
    tail, place, at = logread.tail_at(log, 3)
    assert tail == b"line 7\nline 8\nline 9\n" and place == (os.stat(log).st_ino, log.stat().st_size)
    assert log.read_bytes()[at:] == tail
    with open(log, "ab") as f:
        f.write(b"line 10\n")
    out = io.BytesIO()
    logread.follow(log, out, lambda: True, framed=False, start=place, poll_s=0.01)
    assert out.getvalue() == b"line 10\n"


def test_every_verb_of_the_agents_command_line_is_run_by_exactly_one_handler():
    from agent.verbs import _ANSWERS, _OTHERS
    from agent.verbs import VERBS

    assert not set(_ANSWERS) & set(_OTHERS)
    assert set(VERBS) == set(_ANSWERS) | set(_OTHERS)


def test_a_resumed_job_shows_the_step_it_resumed_from_until_it_reports_more(tmp_path):
    """On a fresh host a resumed job has no progress of its own yet: status says the step of
    the backup it resumed from, not nothing (a job whose backup was its last step reports none)."""
    path = tmp_path / "progress.jsonl"
    reader = ProgressReader(path)
    reader.resumed_at(59)
    assert reader.step == 59
    path.write_text('{"step": 60}\n')
    reader.poll()
    assert reader.step == 60
    reader.resumed_at(12)  # an attempt that already has progress keeps it
    assert reader.step == 60


def test_a_signal_request_while_the_workload_exits_does_not_kill_it(tmp_path):
    """The "second restart on a loaded machine": a Python process puts SIGUSR1/SIGUSR2 back
    to their default action (terminate) while it exits, so a checkpoint request landing then
    killed a workload that had finished ("killed by SIGUSR1", an infra restart)."""
    child = ("from agent import progress\nprogress.report(0)\nprogress.checkpoint_requested()\n"
             "junk = [dict(a=i) for i in range(100000)]\n")  # something to free: a longer exit
    runtime = Path(__file__).resolve().parent.parent
    codes = []
    for i in range(10):
        job = tmp_path / str(i)
        job.mkdir()
        env = dict(os.environ, TETHER_JOB_DIR=str(job), TETHER_PROGRESS_FILE=str(job / "progress.jsonl"),
                   PYTHONPATH=str(runtime))
        p = subprocess.Popen([sys.executable, "-c", child], env=env)
        reg = job / "control" / "listeners" / str(p.pid)
        wait_for(lambda: p.poll() is not None or (reg.exists() and "SIGUSR1" in reg.read_text()), 20,
                 every=0.001, what="the child to register for SIGUSR1")
        while p.poll() is None:  # requests as fast as they come, right through its exit
            for sig in (signal.SIGUSR1, signal.SIGUSR2):
                try:
                    os.kill(p.pid, sig)
                except ProcessLookupError:
                    pass
            time.sleep(0.001)
        codes.append(p.returncode)
    assert codes == [0] * 10
