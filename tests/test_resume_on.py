"""The host is gone: backups mirrored to the laptop carry the job to a second host."""

from __future__ import annotations

import json

import pytest

from conftest import finished_ssh_job, launched_id, status_json, wait_for, wait_state, wipe_host
from fake_hub import FakeHub
from scripts import RESUMABLE

from agent.paths import backup_order
from launcher.errors import ExitCode


def test_resume_on_a_new_host_from_the_laptop_mirror(tether, project, own_sshd, tmp_path, monkeypatch):
    conf = tmp_path / "ssh_config"  # testhost (the session's sshd) and hosta (this test's own)
    conf.write_text(conf.read_text() + own_sshd.ssh_config("hosta"))
    root = tmp_path / "root"
    spec = project(f"""
        name: moving
        host: {{provider: ssh, address: hosta, root: {root}}}
        run: python3 train.py 60 0.1 10
        heartbeat: {{every_s: 0.5}}
        backup: {{every_min: 0.02, keep: 2, mirror: laptop}}
    """, {"train.py": RESUMABLE})
    job = launched_id(tether("launch", spec))
    mirrors = tmp_path / "tether-home" / "mirrors" / job / "backups"

    def mirrored():
        status_json(tether, job)  # every tether command brings new backups along
        return mirrors.is_dir() and [p for p in mirrors.iterdir() if (p / "MANIFEST.json").exists()]

    wait_for(mirrored, 60, what="a backup mirrored to the laptop")
    # While hosta still runs it, a move would make two copies train: refused, nothing changed.
    r = tether("resume", job, "--on", "testhost")
    assert r.exit_code == ExitCode.BAD_SPEC, r
    assert f"job {job} still runs on" in r.stderr and f"tether stop {job}" in r.stderr, r.stderr
    assert status_json(tether, job)["state"] == "RUNNING"  # still hosta's, untouched
    # The first host disappears: its sshd, its processes, its disk.
    own_sshd.stop()
    own_sshd.kill_sessions()
    wipe_host(root)
    newest = max((json.loads((p / "MANIFEST.json").read_text()) for p in mirrors.iterdir()
                  if (p / "MANIFEST.json").exists()), key=lambda m: m["created"])

    r = tether("resume", job, "--on", "testhost")
    assert r.exit_code == 0, r
    assert "does not answer" in r.stdout and "taken as gone" in r.stdout, r.stdout  # said, not silent
    assert f"(step {newest['step']}) to the new host" in r.stdout
    done = wait_state(tether, job, "SUCCEEDED", timeout=90)
    assert done["host"].startswith("root@127.0.0.1:") and done["step"] == 59
    log = (root / "jobs" / job / "logs" / "workload.log").read_text()
    assert log.startswith(f"resumed at {newest['step'] + 1}")

    hub = FakeHub()
    try:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.setenv("HF_TOKEN", hub.token)
        assert tether("publish", job, "--repo", "tester/moved").exit_code == 0
        assert json.loads(hub.repos["tester/moved"].files["result.json"])["steps"] == 60
    finally:
        hub.stop()


def test_resume_on_without_a_mirror_says_what_to_do(tether, project, host_root):
    job = finished_ssh_job(tether, project, host_root, "nomirror")
    r = tether("resume", job, "--on", "testhost")
    assert r.exit_code == ExitCode.NO_BACKUP
    assert "no backup mirrored to this laptop" in r.stderr and "backup.mirror: laptop" in r.stderr


def test_watch_shows_the_job_until_it_ends_and_brings_its_backups(tether, project, host_root, tmp_path):
    spec = project(f"""
        name: watched
        host: {{provider: ssh, address: testhost, root: {host_root}}}
        run: python3 train.py 30 0.1 5
        heartbeat: {{every_s: 0.5}}
        backup: {{every_min: 0.01, keep: 2, mirror: laptop}}
    """, {"train.py": RESUMABLE})
    job = launched_id(tether("launch", spec))
    r = tether("watch", job, "--every", "0.5")
    assert r.exit_code == 0, r
    lines = r.stdout.strip().splitlines()
    assert "SUCCEEDED" in lines[-1] and "step 29" in lines[-1], lines
    assert any("RUNNING" in line for line in lines[:-1]), lines  # it watched, not just read the end
    mirrors = tmp_path / "tether-home" / "mirrors" / job / "backups"
    on_host = sorted((p.name for p in (host_root / "jobs" / job / "backups").iterdir() if not p.name.startswith(".")),
                     key=backup_order)
    assert on_host and on_host[-1] in {p.name for p in mirrors.iterdir() if (p / "MANIFEST.json").exists()}


@pytest.mark.parametrize("states, refused, noted", [
    (["RUNNING"], True, False), (["STALLED"], True, False), (["RESTARTING"], True, False),
    (["SUCCEEDED"], False, False), (["STOPPED"], False, False), (["LOST"], False, False),
    (["UNREACHABLE"], False, True), (["UNREACHABLE", "RUNNING"], True, False),
    (["FAILED", "UNREACHABLE"], False, True), (["LOST", "STOPPED"], False, False)])
def test_which_old_hosts_stop_a_move(states, refused, noted):
    """Decided from what the old host(s) said: any that runs the job refuses the move; one that
    does not answer is taken as gone, and said so (node k of a multi-node job alike)."""
    from rich.console import Console

    from agent.states import JobState
    from launcher.backends.agent import refuse_two_copies
    from launcher.errors import UsageError
    from launcher.jobs.view import JobView

    views = [JobView(None, JobState(s), reason="[red]no route[/red]", host=f"root@10.0.0.{k}:22")  # type: ignore[arg-type]
             for k, s in enumerate(states)]
    console = Console(record=True, width=300)
    if refused:
        with pytest.raises(UsageError, match="still runs on root@10.0.0.*two copies would train"):
            refuse_two_copies("j1", views, console)
        return
    refuse_two_copies("j1", views, console)
    said = console.export_text()
    assert ("does not answer ([red]no route[/red]): taken as gone" in said) == noted, said
