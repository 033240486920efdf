"""The host is gone: backups mirrored to the laptop carry the job to a second host."""

from __future__ import annotations

import json
import shutil

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
        run: python3 train.py 60 0.25 10
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
    # Its runtime folder removed by hand while it runs: the host cannot say, and is not taken as wiped.
    for runtime in (root / "runtime").iterdir():
        shutil.rmtree(runtime)
    r = tether("resume", job, "--on", "testhost")
    assert r.exit_code == ExitCode.BAD_SPEC and f"cannot tell whether job {job} still runs on" in r.stderr, r
    assert "is there though its tether runtime is not" in r.stderr, r.stderr
    # hosta rebuilt (another host key): what runs there cannot be asked, and is not guessed.
    own_sshd.restart(new_host_key=True)
    own_sshd.kill_sessions()
    r = tether("resume", job, "--on", "testhost")
    assert r.exit_code == ExitCode.BAD_SPEC and f"cannot tell whether job {job} still runs on" in r.stderr, r
    assert "host key" in r.stderr and "--force" in r.stderr, r.stderr
    # The first host disappears: its sshd, its processes, its disk.
    own_sshd.stop()
    own_sshd.kill_sessions()
    wipe_host(root)
    newest = max((json.loads((p / "MANIFEST.json").read_text()) for p in mirrors.iterdir()
                  if (p / "MANIFEST.json").exists()), key=lambda m: m["created"])

    r = tether("resume", job, "--on", "testhost", "--force")  # the user knows it is gone: not asked
    assert r.exit_code == 0, r
    assert "the old host was not asked (--force)" in r.stdout, r.stdout
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
    r = tether("resume", job, "--force")  # nothing to skip without --on
    assert r.exit_code == ExitCode.BAD_SPEC and "--force is for resume --on" in r.stderr, r


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


@pytest.mark.parametrize("seen, refused, noted", [
    (["RUNNING"], "still runs", False), (["STALLED"], "still runs", False), (["RESTARTING"], "still runs", False),
    (["PENDING"], "still runs", False), (["SETUP"], "still runs", False), (["BACKING_UP"], "still runs", False),
    (["SUCCEEDED"], None, False), (["STOPPED"], None, False), (["FAILED"], None, False),
    (["LOST"], "may still be", False),              # its agent died there; its workload may not have
    (["LOST gone"], None, False),                   # the job's folder is gone from the host
    (["UNREACHABLE unreachable"], None, True),      # no connection: taken as gone, said
    (["UNREACHABLE runtime"], None, False),         # it holds no tether runtime of the job: wiped
    (["UNREACHABLE auth"], "cannot tell", False),   # it answered, but not with the job's state
    (["UNREACHABLE key"], "cannot tell", False), (["UNREACHABLE"], "cannot tell", False),
    (["UNREACHABLE unreachable", "RUNNING"], "still runs", False),
    (["FAILED", "UNREACHABLE unreachable"], None, True), (["LOST gone", "STOPPED"], None, False)])
def test_which_old_hosts_stop_a_move(seen, refused, noted):
    """Decided from what the old host(s) said: a move goes on only where every one said the
    job ended there, or could not be reached at all (node k of a multi-node job alike)."""
    from rich.console import Console

    from agent.protocol import StatusAnswer
    from agent.states import JobState
    from launcher.backends.agent import refuse_two_copies
    from launcher.errors import AuthError, HostKeyChangedError, RuntimeGoneError, UnreachableError, UsageError
    from launcher.jobs.view import JobView

    errors = {"unreachable": UnreachableError("no route to the host"), "auth": AuthError("authentication failed"),
              "key": HostKeyChangedError("the host key changed"), "gone": None, "": None,
              "runtime": RuntimeGoneError("no tether runtime at /r/runtime/0.1 on the host")}
    views = []
    for k, s in enumerate(seen):
        state, _, how = s.partition(" ")
        views.append(JobView(None, JobState(state), reason="[red]no route[/red]", host=f"root@10.0.0.{k}:22",  # type: ignore[arg-type]
                             answer=StatusAnswer(exists=how != "gone"), error=errors[how]))
    console = Console(record=True, width=300)
    if refused:
        with pytest.raises(UsageError, match=f"{refused}.*") as exc:
            refuse_two_copies("j1", views, console)
        assert "root@10.0.0." in exc.value.what and exc.value.todo
        return
    refuse_two_copies("j1", views, console)
    said = console.export_text()
    assert ("does not answer ([red]no route[/red]): taken as gone" in said) == noted, said
