"""The agent keeps a job alive: restarts, hangs, lost agents, bad backups, full disks,
deadlines. Real processes, real signals, through the real sshd."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import job_events, launched_id, status_json, wait_for, wait_state
from scripts import HANGS, RESUMABLE


def spec(root, run, extra=""):
    return f"""
        name: keepalive
        host: {{provider: ssh, address: testhost, root: {root}}}
        run: {run}
        heartbeat: {{every_s: 0.5, stall_after_s: 30}}
        stop: {{grace_s: 5}}
        restart: {{max: 2, on: [infra, stall], backoff_s: 0.2}}
        backup: {{every_min: 0.02, keep: 3}}
        {extra}
    """


def events(root: Path, job: str, kind: str = None):
    """(The agent holds its job's lock, and `launch` returns, before it writes any event.)"""
    return job_events(root, job, kind)


def steps(root: Path, job: str):
    recs = [json.loads(x) for x in (root / "jobs" / job / "progress.jsonl").read_text().splitlines()]
    return [r["step"] for r in recs if "loss" in r]


def first_step_after(root: Path, job: str, event: dict) -> int:
    """The first step reported after an event: where a restarted attempt began. (The step
    sequence need not drop at a restart: a backup can hold the very last step reported.)"""
    recs = [json.loads(x) for x in (root / "jobs" / job / "progress.jsonl").read_text().splitlines()]
    return next(r["step"] for r in recs if "loss" in r and r["time"] > event["time"])


def wait_backup_and_step(tether, root: Path, job: str, step: int) -> None:
    wait_for(lambda: events(root, job, "backup-done") and (status_json(tether, job)["step"] or 0) >= step,
             60, what=f"a backup and step {step}")


def test_killed_workload_restarts_from_the_last_backup(tether, project, host_root):
    path = project(spec(host_root, "python3 train.py 60 0.1"), {"train.py": RESUMABLE})
    job = launched_id(tether("launch", path))
    wait_backup_and_step(tether, host_root, job, 15)
    pid = json.loads((host_root / "jobs" / job / "heartbeat.json").read_text())["workload_pid"]
    os.kill(pid, signal.SIGKILL)
    done = wait_state(tether, job, "SUCCEEDED", timeout=90)
    # One kill, one restart, exactly (also on a loaded machine).
    restarts = [e for e in events(host_root, job, "state") if e["state"] == "RESTARTING"]
    assert done["attempt"] == len(restarts) == 1, events(host_root, job)
    assert restarts[0]["failure"] == "infra", restarts
    # From the newest backup, or from a checkpoint the workload announced after it (the kill
    # can land while that checkpoint's backup is being copied: resume_point's documented
    # choice, as for a killed agent below): either way, the step after it, never 0.
    resumed = [e for e in events(host_root, job, "resume") if e.get("backup") or e.get("live")]
    assert resumed, events(host_root, job)
    backed_step = resumed[-1]["step"]
    assert first_step_after(host_root, job, resumed[-1]) == backed_step + 1 != 0  # not from 0
    assert steps(host_root, job)[-1] == 59
    assert "SIGKILL" in restarts[0]["reason"]
    result = json.loads((host_root / "jobs" / job / "outputs" / "result.json").read_text())
    assert result["attempt"] == 1


def test_hang_is_detected_stacks_recorded_then_gives_up(tether, project, host_root):
    extra = "heartbeat: {every_s: 0.5, stall_after_s: 2}"
    body = spec(host_root, "python3 hang.py").replace("heartbeat: {every_s: 0.5, stall_after_s: 30}", extra)
    body = body.replace("restart: {max: 2,", "restart: {max: 1,")
    job = launched_id(tether("launch", project(body, {"hang.py": HANGS})))
    st = wait_state(tether, job, "FAILED", timeout=60)
    assert st["failure"] == "stall" and "gave up after 1 restart(s)" in st["reason"]
    stalls = events(host_root, job, "stalled")
    assert len(stalls) == 2
    for e in stalls:
        assert 2 <= e["quiet_s"] < 2 + 5  # stall_after_s, plus slack for a busy shared machine
    stacks = (host_root / "jobs" / job / "logs" / "stacks-attempt0.txt").read_text()
    assert "stuck_here" in stacks and "faulthandler" in stacks


def test_user_error_not_in_restart_on_fails_at_once(tether, project, host_root):
    job = launched_id(tether("launch", project(spec(host_root, "echo bad input; exit 3"))))
    st = wait_state(tether, job, "FAILED")
    assert st["failure"] == "user" and st["exit_code"] == 3 and st["attempt"] == 0
    assert "restart" not in st["reason"]
    assert not [e for e in events(host_root, job, "state") if e["state"] == "RESTARTING"]


def test_killed_agent_is_lost_then_resume_finishes_from_the_backup(tether, project, host_root):
    path = project(spec(host_root, "python3 train.py 50 0.1 10"), {"train.py": RESUMABLE})
    job = launched_id(tether("launch", path))
    wait_backup_and_step(tether, host_root, job, 22)
    agent_pid = json.loads((host_root / "jobs" / job / "state.json").read_text())["agent_pid"]
    os.kill(agent_pid, signal.SIGKILL)
    lost = wait_state(tether, job, "LOST", timeout=10)
    assert "agent is not running" in lost["reason"]

    r = tether("resume", job)
    assert r.exit_code == 0, r
    assert "was RUNNING" in r.stdout
    done = wait_state(tether, job, "SUCCEEDED", timeout=60)
    # From the newest backup, or from a checkpoint the workload finished after it (its process
    # outlives the killed agent for a moment on a loaded machine): either way, the step after.
    resumed = [e for e in events(host_root, job, "resume") if e.get("backup") or e.get("live")][-1]
    assert first_step_after(host_root, job, resumed) == resumed["step"] + 1 and resumed["step"] >= 9
    assert done["attempt"] == 1
    assert tether("resume", job).exit_code != 0  # a finished job is not resumed again


def test_corrupted_newest_backup_is_skipped_on_resume(tether, project, host_root, tmp_path):
    body = spec(host_root, "python3 train.py 1000 0.05 10").replace("every_min: 0.02", "every_min: 0.01")
    job = launched_id(tether("launch", project(body, {"train.py": RESUMABLE})))
    wait_for(lambda: len(events(host_root, job, "backup-done")) >= 3, 60, what="three backups")
    assert tether("stop", job).exit_code == 0
    listing = json.loads(tether("backups", job, "--json").stdout)
    assert len(listing) == 3 and all(b["verified"] for b in listing)
    newest, previous = listing[-1], listing[-2]

    weights = host_root / "jobs" / job / "backups" / newest["name"] / "data" / f"step-{newest['step']}" / "state.json"
    with open(weights, "r+") as f:
        f.truncate(3)  # truncated after its manifest was written
    shutil.rmtree(host_root / "jobs" / job / "checkpoints")  # and no live checkpoint to fall back on
    table = tether("backups", job)
    assert "no:" in table.stdout and "has 3 bytes" in table.stdout

    got = tether("pull", job, "--backup", "latest", "--to", tmp_path / "b")
    assert got.exit_code == 0, got
    assert (tmp_path / "b" / "backups" / previous["name"] / "MANIFEST.json").exists()

    assert tether("resume", job).exit_code == 0
    wait_for(lambda: [e for e in events(host_root, job, "resume") if e.get("backup")], 30, what="resume")
    skipped = events(host_root, job, "backup-skipped")
    assert skipped and skipped[0]["name"] == newest["name"] and "has 3 bytes" in skipped[0]["problem"]
    used = [e for e in events(host_root, job, "resume") if e.get("backup")][-1]
    assert used["backup"] == previous["name"]
    wait_for(lambda: f"resumed at {previous['step'] + 1}" in
             (host_root / "jobs" / job / "logs" / "workload.log").read_text(), 30, what="the resumed workload")
    tether("stop", job)


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.parametrize("on_full, final", [("continue", "SUCCEEDED"), ("stop", "STOPPED")])
def test_disk_full_while_backing_up_keeps_older_backups(tether, project, small_disk, on_full, final):
    root = small_disk / "root"
    body = spec(root, "python3 train.py 300 0.05 0 700000").replace(
        "backup: {every_min: 0.02, keep: 3}",
        f"backup: {{every_min: 0.02, keep: 10, mode: copy, on_disk_full: {on_full}}}")
    job = launched_id(tether("launch", project(body, {"train.py": RESUMABLE})))
    st = wait_state(tether, job, final, timeout=90)
    failed = events(root, job, "backup-failed")
    assert failed and failed[0]["disk_full"], events(root, job)
    done = events(root, job, "backup-done")
    assert done and set(failed[0]["kept"]) == {e["name"] for e in done[: len(failed[0]["kept"])]}
    listing = json.loads(tether("backups", job, "--json").stdout)
    assert listing and all(b["verified"] for b in listing)
    assert not [p for p in (root / "jobs" / job / "backups").iterdir() if p.name.startswith(".tmp-")]
    if on_full == "stop":
        assert st["failure"] == "infra" and "disk full" in st["reason"]
    else:
        assert st["step"] == 299


def test_deadline_stops_with_a_final_backup_and_resume_continues(tether, project, host_root):
    body = spec(host_root, "python3 train.py 70 0.1", "limits: {max_hours: 0.0012, margin_s: 1}").replace(
        "backup: {every_min: 0.02, keep: 3}", "backup: {every_min: 10, keep: 3}")
    job = launched_id(tether("launch", project(body, {"train.py": RESUMABLE})))
    st = wait_state(tether, job, "STOPPED", timeout=30)
    assert st["failure"] == "deadline" and "deadline" in st["reason"]
    backups = json.loads(tether("backups", job, "--json").stdout)
    assert len(backups) == 1 and backups[0]["verified"]  # the final one, from SIGTERM
    stopped_at = backups[0]["step"]
    assert tether("resume", job).exit_code == 0
    done = wait_state(tether, job, ["SUCCEEDED", "STOPPED"], timeout=30)
    assert f"resumed at {stopped_at + 1}" in (host_root / "jobs" / job / "logs" / "workload.log").read_text()
    assert done["state"] == "SUCCEEDED", done


def test_stages_skip_what_finished(tether, project, host_root, tmp_path):
    count = tmp_path / "prep-count"
    body = f"""
        name: staged
        host: {{provider: ssh, address: testhost, root: {host_root}}}
        stages:
          - {{name: prepare, run: echo prepared >> {count}}}
          - {{name: train, run: test -f {tmp_path}/go || exit 5}}
        restart: {{max: 0}}
    """
    job = launched_id(tether("launch", project(body)))
    st = wait_state(tether, job, "FAILED")
    assert st["stage"] == "train" and st["exit_code"] == 5
    (tmp_path / "go").write_text("")
    assert tether("resume", job).exit_code == 0
    done = wait_state(tether, job, "SUCCEEDED")
    assert done["reason"] == "all 2 stages finished"
    assert count.read_text() == "prepared\n"
    assert [e["stage"] for e in events(host_root, job, "stage-skipped")] == ["prepare"]


def test_resource_warnings_show_in_status(tether, project, host_root):
    body = spec(host_root, "sleep 3", "watch: {min_disk_free_gb: 1000000}")
    job = launched_id(tether("launch", project(body)))
    wait_for(lambda: status_json(tether, job)["warnings"], 20, what="a warning")
    assert "disk free" in tether("status", job).stdout
    assert events(host_root, job, "resource-warning")[0]["what"] == "disk"


def test_hang_stacks_with_py_spy_on_the_local_host(tether, project, tmp_path):
    """py-spy (a dev dependency) next to the agent's Python is preferred to faulthandler."""
    root = tmp_path / "local-root"
    body = f"""
        name: hang-local
        host: {{provider: local, root: {root}}}
        run: python hang.py
        heartbeat: {{every_s: 0.5, stall_after_s: 2}}
        restart: {{max: 0}}
    """
    job = launched_id(tether("launch", project(body, {"hang.py": HANGS})))
    st = wait_state(tether, job, "FAILED", timeout=60)
    assert st["failure"] == "stall"
    assert events(root, job, "stalled")[0]["how"] == "py-spy"
    stacks = (root / "jobs" / job / "logs" / "stacks-attempt0.txt").read_text()
    assert "py-spy dump" in stacks and "stuck_here" in stacks
