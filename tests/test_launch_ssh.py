"""Launch, watch and pull through a real OpenSSH server, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import launched_id, status_json, wait_for, wait_state
from scripts import COUNTER

from launcher.errors import ExitCode


def spec_for(host_root, run="python3 train.py 5 0.1", extra=""):
    return f"""
        name: counter
        workdir: .
        host: {{provider: ssh, address: testhost, root: {host_root}}}
        run: {run}
        heartbeat: {{every_s: 0.5}}
        stop: {{grace_s: 5}}
        {extra}
    """


def test_launch_status_logs_pull(tether, project, host_root, tmp_path):
    spec = project(spec_for(host_root, run="python3 train.py 30 0.1"), {"train.py": COUNTER})
    r = tether("launch", spec)
    assert r.exit_code == 0, r
    assert "shipped the agent runtime" in r.stdout
    job = launched_id(r)

    running = wait_state(tether, job, "RUNNING")
    wait_for(lambda: (status_json(tether, job).get("step") or 0) >= 2, 30, what="progress")
    human = tether("status", job)
    assert "RUNNING" in human.stdout and "loss=" in human.stdout and "heartbeat" in human.stdout
    assert running["host"] == "root@127.0.0.1:" + running["host"].rsplit(":", 1)[1]

    done = wait_state(tether, job, "SUCCEEDED", timeout=60)
    assert done["step"] == 29 and done["exit_code"] == 0

    logs = tether("logs", job, "--tail", "3")
    assert logs.stdout.splitlines() == ["step 28", "step 29", "done"]

    dest = tmp_path / "pulled"
    p = tether("pull", job, "--to", dest)
    assert p.exit_code == 0, p
    assert json.loads((dest / "outputs" / "result.json").read_text()) == {"steps": 30}
    again = tether("pull", job, "--to", dest)
    assert "0 file(s)" in again.stdout and "1 already there" in again.stdout

    jobs = tether("jobs")
    assert job in jobs.stdout and "SUCCEEDED" in jobs.stdout


def test_follow_streams_log_and_exit_code(tether, project, host_root):
    spec = project(spec_for(host_root, run="python3 train.py 3 0.05 && exit 3"), {"train.py": COUNTER})
    r = tether("launch", spec, "--follow")
    assert r.exit_code == ExitCode.FAILED, r
    assert "step 2" in r.stdout and "done" in r.stdout
    assert "FAILED" in r.stdout and "exited with code 3" in r.stdout


@pytest.mark.parametrize("way", ["session", "rsync"])
def test_relaunch_sends_only_changes_and_running_job_keeps_its_files(tether, project, host_root, way, request):
    """A small change goes on the launch's own connection, a big one through rsync (forced
    here for small files): either way only what changed travels, deletions included, and a
    running job keeps the files it started with."""
    if way == "rsync":
        request.getfixturevalue("rsync_sync")
    via = "via rsync" if way == "rsync" else "via the launch's own connection"
    files = {"train.py": COUNTER, "data/a.txt": "a" * 1000, "data/b.txt": "b", "notes/ü n.txt": "x"}
    spec = project(spec_for(host_root, run="sleep 3; cat data/b.txt > $TETHER_OUTPUT_DIR/b.txt"), files)
    first = tether("launch", spec)
    assert f"5 file(s) sent {via}" in first.stdout and "0 unchanged" in first.stdout  # with job.yaml
    job1 = launched_id(first)

    same = tether("launch", spec)
    assert "0 file(s) sent (0 B)" in same.stdout and "5 unchanged" in same.stdout

    (spec.parent / "data" / "b.txt").write_text("edited")
    (spec.parent / "notes" / "ü n.txt").unlink()
    edit = tether("launch", spec)
    assert f"1 file(s) sent {via} (6 B), 1 deleted, 3 unchanged" in edit.stdout, edit
    job3 = launched_id(edit)

    wait_state(tether, job1, "SUCCEEDED")
    wait_state(tether, job3, "SUCCEEDED")
    assert (host_root / "jobs" / job1 / "outputs" / "b.txt").read_text() == "b"  # its own snapshot
    assert (host_root / "jobs" / job3 / "outputs" / "b.txt").read_text() == "edited"
    assert not (host_root / "code" / "counter" / "notes").exists()


def test_a_new_file_cut_short_on_the_host_is_sent_again(tether, project, host_root, rsync_sync):
    """rsync writes files new to the host in place (no temp name to rename: nothing links to
    them yet). One cut short by a killed launch has the right name and part of the bytes: the
    host's next manifest hashes it, so the next launch sends it again and the job reads it whole."""
    spec = project(spec_for(host_root, run="cat data.txt > $TETHER_OUTPUT_DIR/seen.txt"), {"data.txt": "x" * 5000})
    first = tether("launch", spec)
    assert "2 file(s) sent via rsync" in first.stdout, first
    wait_state(tether, launched_id(first), "SUCCEEDED")
    on_host = host_root / "code" / "counter" / "data.txt"
    on_host.unlink()  # its own inode, as a file rsync was still writing
    on_host.write_text("x" * 100)
    second = tether("launch", spec)
    assert "1 file(s) sent via rsync (4.9 KB), 0 deleted, 1 unchanged" in second.stdout, second
    job = launched_id(second)
    wait_state(tether, job, "SUCCEEDED")
    assert (host_root / "jobs" / job / "outputs" / "seen.txt").read_text() == "x" * 5000


def test_a_new_file_never_writes_through_what_is_at_its_path_on_the_host(tether, project, host_root, tmp_path,
                                                                        rsync_sync):
    """A path the host's manifest does not have may still be taken there (a symlink, which the
    manifest leaves out; another case of the name on a case-insensitive disk): the in-place
    pass skips what exists, and that file goes by rename, replacing the entry, never writing
    through it."""
    spec = project(spec_for(host_root, run="cat data.txt > $TETHER_OUTPUT_DIR/seen.txt || true"), {"other.txt": "o"})
    wait_state(tether, launched_id(tether("launch", spec)), "SUCCEEDED")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (host_root / "code" / "counter" / "data.txt").symlink_to(victim)
    (spec.parent / "data.txt").write_text("from the laptop")
    second = tether("launch", spec)
    assert "1 file(s) sent via rsync" in second.stdout, second
    job = launched_id(second)
    wait_state(tether, job, "SUCCEEDED")
    assert victim.read_text() == "keep me"
    assert (host_root / "jobs" / job / "outputs" / "seen.txt").read_text() == "from the laptop"
    assert not (host_root / "code" / "counter" / "data.txt").is_symlink()


def test_agent_survives_the_connection_going_away(tether, project, tmp_path, own_sshd, monkeypatch):
    conf = tmp_path / "own_ssh_config"
    conf.write_text(own_sshd.ssh_config("own"))
    monkeypatch.setenv("TETHER_SSH_CONFIG", str(conf))
    root = tmp_path / "own-root"
    spec = project(spec_for(root, run="python3 train.py 20 0.1").replace("testhost", "own"),
                   {"train.py": COUNTER})
    job = launched_id(tether("launch", spec))
    own_sshd.stop()
    own_sshd.kill_sessions()  # every SSH process of this server is gone, the laptop is "closed"
    unreachable = tether("status", job)
    assert unreachable.exit_code == ExitCode.UNREACHABLE
    time.sleep(3)
    own_sshd.start()
    done = wait_state(tether, job, "SUCCEEDED", timeout=60)
    assert done["step"] == 19


def test_stop_terminates_gracefully(tether, project, host_root):
    spec = project(spec_for(host_root, run="python3 train.py 1000 0.1"), {"train.py": COUNTER})
    job = launched_id(tether("launch", spec))
    wait_for(lambda: (status_json(tether, job).get("step") or 0) >= 1, 30, what="progress")
    r = tether("stop", job)
    assert r.exit_code == 0, r
    assert "STOPPED" in r.stdout
    st = status_json(tether, job)
    assert st["state"] == "STOPPED" and st["reason"] == "stopped by tether stop"
    assert (host_root / "jobs" / job / "outputs" / "stopped.txt").exists()  # it saw SIGTERM


def test_stop_kills_after_grace(tether, project, host_root):
    ignore_term = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(1000)"
    spec = project(spec_for(host_root, run=f'python3 -c "{ignore_term}"').replace("grace_s: 5", "grace_s: 1"))
    job = launched_id(tether("launch", spec))
    wait_state(tether, job, "RUNNING")
    time.sleep(0.5)
    assert tether("stop", job).exit_code == 0
    events = [json.loads(x) for x in (host_root / "jobs" / job / "events.jsonl").read_text().splitlines()]
    assert any(e["event"] == "killed" for e in events)
    assert status_json(tether, job)["state"] == "STOPPED"


def test_secrets_never_on_a_command_line(tether, project, host_root, monkeypatch):
    secret = "hf_very_secret_value_123"
    monkeypatch.setenv("HF_TOKEN", secret)
    check = ("import os, time, hashlib; from agent import progress; "
             "open(os.path.join(progress.output_dir(), 'h'), 'w')"
             ".write(hashlib.sha256(os.environ['HF_TOKEN'].encode()).hexdigest()); time.sleep(3)")
    spec = project(spec_for(host_root, run=f'python3 -c "{check}"', extra="secrets: [HF_TOKEN]"))
    job = launched_id(tether("launch", spec))
    jd = host_root / "jobs" / job
    wait_for(lambda: (jd / "outputs" / "h").exists(), 30, what="the workload to start")
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert secret not in ps

    def files_holding_secret():
        return [p for p in host_root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]

    assert files_holding_secret() == []  # it reached the agent through a pipe: no file, not even briefly
    wait_state(tether, job, "SUCCEEDED")
    import hashlib
    assert (jd / "outputs" / "h").read_text() == hashlib.sha256(secret.encode()).hexdigest()
    assert not (jd / "secrets.json").exists()
    assert files_holding_secret() == []
    assert secret not in (tether_home_db := (os.environ["TETHER_HOME"] + "/jobs.db")) and \
        secret.encode() not in open(tether_home_db, "rb").read()


def test_missing_secret_is_refused_before_anything_runs(tether, project, host_root):
    spec = project(spec_for(host_root, extra="secrets: [HF_TOKEN]"), {"train.py": COUNTER})
    r = tether("launch", spec)
    assert r.exit_code == ExitCode.BAD_SPEC
    assert "HF_TOKEN is not set" in r.stderr and "export HF_TOKEN" in r.stderr
    assert not host_root.exists()
    assert tether("jobs").stdout.strip().startswith("no jobs")


def test_setup_runs_once_per_inputs(tether, project, host_root, tmp_path):
    count = tmp_path / "setup-count"
    setup = f"setup: cat requirements.txt >> {count}"
    spec = project(spec_for(host_root, run="exit 0", extra=setup), {"requirements.txt": "numpy\n"})
    j1 = launched_id(first := tether("launch", spec))
    assert "setup: will run" in first.stdout
    wait_state(tether, j1, "SUCCEEDED")
    second = tether("launch", spec)
    assert "skipping" in second.stdout
    wait_state(tether, launched_id(second), "SUCCEEDED")
    assert count.read_text() == "numpy\n"
    (spec.parent / "requirements.txt").write_text("numpy\ntorch\n")
    third = tether("launch", spec)
    assert "setup: will run" in third.stdout
    wait_state(tether, launched_id(third), "SUCCEEDED")
    assert count.read_text() == "numpy\nnumpy\ntorch\n"


def test_failed_setup_fails_the_job(tether, project, host_root):
    spec = project(spec_for(host_root, run="exit 0", extra="setup: echo broken; exit 7"))
    job = launched_id(tether("launch", spec))
    st = wait_state(tether, job, "FAILED")
    assert st["exit_code"] == 7 and "setup exited with code 7" in st["reason"]
    assert tether("logs", job, "--file", "setup").stdout.strip() == "broken"


def test_lost_when_the_agent_is_killed(tether, project, host_root):
    spec = project(spec_for(host_root, run="python3 train.py 1000 0.1"), {"train.py": COUNTER})
    job = launched_id(tether("launch", spec))
    wait_state(tether, job, "RUNNING")
    state = json.loads((host_root / "jobs" / job / "state.json").read_text())
    os.kill(state["agent_pid"], 9)
    st = wait_state(tether, job, "LOST", timeout=10)
    assert "agent is not running" in st["reason"]
    assert "LOST" in tether("jobs").stdout


def test_tether_ssh_runs_in_the_job_folder(tether, project, host_root):
    spec = project(spec_for(host_root, run="exit 0"))
    job = launched_id(tether("launch", spec))
    wait_state(tether, job, "SUCCEEDED")
    r = subprocess.run([sys.executable, "-m", "launcher", "ssh", job, "--", "cat", "state.json"], capture_output=True, text=True,
                       env=os.environ)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["state"] == "SUCCEEDED"


def test_sync_falls_back_to_the_tar_stream_when_rsync_fails(tether, project, host_root, tmp_path, monkeypatch,
                                                            rsync_sync):
    """rsync is a fast path, never a requirement: when it fails (here an rsync that cannot
    reach its other end, as when the host has none) the files still arrive, as a tar."""
    fake = tmp_path / "bin" / "rsync"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'sh: 1: rsync: not found' >&2\n"
                    "echo 'rsync: connection unexpectedly closed (0 bytes received so far) [sender]' >&2\nexit 12\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    spec = project(spec_for(host_root, run="cat data/b.txt > $TETHER_OUTPUT_DIR/b.txt"), {"data/b.txt": "bee"})
    r = tether("launch", spec)
    assert r.exit_code == 0, r
    assert "rsync not used (rsync exited 12: rsync: connection unexpectedly closed" in r.stdout, r
    assert "2 file(s) sent via tar" in r.stdout
    job = launched_id(r)
    wait_state(tether, job, "SUCCEEDED")
    assert (host_root / "jobs" / job / "outputs" / "b.txt").read_text() == "bee"
