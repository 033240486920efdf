"""backup.mirror: hf://: backups pushed from the host to a (local stand-in for the) Hub, through
the real huggingface_hub client, and a job carried to a new host from there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import launched_id, status_json, wait_for, wait_state, wipe_host
from fake_hub import Repo
from scripts import RESUMABLE

from launcher.errors import ExitCode


def events(job_dir, kind: str) -> list:
    lines = (job_dir / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e.get("event") == kind]


def test_mirror_to_the_hub_then_resume_on_a_new_host_and_publish(tether, project, own_sshd, tmp_path, hub):
    conf = tmp_path / "ssh_config"  # testhost (the session's sshd) and hosta (this test's own)
    conf.write_text(conf.read_text() + own_sshd.ssh_config("hosta"))
    root, repo = tmp_path / "root", "tester/moving-ckpt"
    spec = project(f"""
        name: moving
        host: {{provider: ssh, address: hosta, root: {root}, python: {sys.executable}}}
        run: python3 train.py 60 0.1 10 300000
        heartbeat: {{every_s: 0.5}}
        backup: {{every_min: 0.02, keep: 2, mirror: "hf://{repo}"}}
    """, {"train.py": RESUMABLE})
    job = launched_id(tether("launch", spec))
    assert hub.repos[repo].private  # created private before the job started

    wait_for(lambda: hub.backups(repo), 60, what="a backup on the Hub")
    mirror = wait_for(lambda: (status_json(tether, job)["mirror"] or {}).get("last"), 30, what="status to show it")
    assert mirror in hub.backups(repo)
    r = tether("status", job)
    assert f"hf://{repo}" in r.stdout and "pushed" in r.stdout

    # The first host disappears: its sshd, its processes, its disk.
    own_sshd.stop()
    own_sshd.kill_sessions()
    wipe_host(root)
    on_hub = hub.backups(repo)
    assert 1 <= len(on_hub) <= 2  # keep: 2 holds there too
    for name, manifest in on_hub.items():  # every folder whole: its files with the bytes the manifest names
        for f in manifest["files"]:
            data = hub.repos[repo].files[f"{name}/data/{f['path']}"]
            assert len(data) == f["size"]
    newest = max(on_hub.values(), key=lambda m: m["created"])

    r = tether("resume", job, "--on", "testhost")
    assert r.exit_code == 0, r
    assert "does not answer" in r.stdout and "taken as gone" in r.stdout, r.stdout  # asked, said, not silent
    # The new host took it from the Hub itself: nothing came down to the laptop.
    assert f"the new host fetched backup {newest['name']} (step {newest['step']}) from hf://{repo}" in r.stdout
    assert not (tmp_path / "tether-home" / "mirrors" / job / "hub").exists()
    done = wait_state(tether, job, "SUCCEEDED", timeout=120)
    assert done["step"] == 59
    host_job = root / "jobs" / job  # the new host keeps the spec's root
    log = (host_job / "logs" / "workload.log").read_text()
    assert log.startswith(f"resumed at {newest['step'] + 1}")
    # The host's newest backup reached the Hub before the job was called done; old ones were pruned.
    newest_here = max((host_job / "backups").iterdir(),
                      key=lambda p: json.loads((p / "MANIFEST.json").read_text())["created"])
    final = hub.backups(repo)
    assert newest_here.name in final and len(final) <= 2
    order = [(e["event"], e.get("name") or e.get("state"))
             for e in map(json.loads, (host_job / "events.jsonl").read_text().splitlines())]
    assert order.index(("mirror-pushed", newest_here.name)) < order.index(("state", "SUCCEEDED"))
    assert not (host_job / "secrets.json").exists()
    for p in host_job.rglob("*"):  # the token is nowhere on the host once the job is over
        if p.is_file():
            assert hub.token.encode() not in p.read_bytes(), p

    assert tether("publish", job, "--repo", "tester/moved").exit_code == 0
    assert json.loads(hub.repos["tester/moved"].files["result.json"])["steps"] == 60


def test_a_failing_push_is_retried_and_shown(tether, project, host_root, hub):
    repo = "tester/flaky-ckpt"
    hub.refuse_lfs_uploads = True  # the Hub's storage refuses the weights for now
    spec = project(f"""
        name: flaky
        host: {{provider: ssh, address: testhost, root: {host_root}, python: {sys.executable}}}
        run: python3 train.py 100000 0.2 5 300000
        heartbeat: {{every_s: 0.5}}
        backup: {{every_min: 0.02, keep: 2, mirror: "hf://{repo}"}}
    """, {"train.py": RESUMABLE})
    job = launched_id(tether("launch", spec))
    failing = wait_for(lambda: (status_json(tether, job)["mirror"] or {}).get("error"), 60, what="a failed push in status")
    assert "403" in failing and not hub.backups(repo)
    r = tether("status", job)
    assert "push failed" in r.stdout and "retrying in" in r.stdout

    hub.refuse_lfs_uploads = False  # storage is back: the next try gets through
    wait_for(lambda: hub.backups(repo), 60, what="the retried push")
    wait_for(lambda: status_json(tether, job)["mirror"].get("error") is None, 30, what="the error to clear")
    job_dir = host_root / "jobs" / job
    failed = events(job_dir, "mirror-failed")
    assert failed and failed[0]["retry_in_s"] > 0
    assert tether("stop", job).exit_code == 0
    stopped = wait_state(tether, job, "STOPPED", timeout=60)
    pushed_before = events(job_dir, "mirror-pushed")
    # The final backup taken on stop went up before the agent exited.
    last = max(hub.backups(repo).values(), key=lambda m: m["created"])
    assert stopped["mirror"]["last"] == last["name"] and stopped["mirror"]["pending"] is None


    # Resumed on the same host: the token is sent again, and new backups keep going up.
    assert tether("resume", job).exit_code == 0
    wait_for(lambda: len(events(job_dir, "mirror-pushed")) > len(pushed_before), 60,
             what="a push after the resume")
    assert not [e for e in events(job_dir, "mirror-failed") if e["time"] > stopped["ended_at"]]
    assert tether("stop", job).exit_code == 0


def test_mirror_problems_stop_the_launch_with_one_line(tether, project, host_root, hub, monkeypatch):
    def launch(mirror: str):
        spec = project(f"""
            name: bad
            host: {{provider: ssh, address: testhost, root: {host_root}}}
            run: echo hi
            backup: {{mirror: "{mirror}"}}
        """)
        return tether("launch", spec)

    r = launch("hf://not a repo")
    assert r.exit_code == ExitCode.BAD_SPEC and "not a Hub repo name" in r.stderr
    r = launch("s3://bucket")
    assert r.exit_code == ExitCode.BAD_SPEC and "hf://user/repo" in r.stderr

    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    r = launch("hf://tester/ckpt")
    assert r.exit_code == ExitCode.AUTH and "refused the token" in r.stderr and "hf_wrong" not in r.stderr + r.stdout
    assert not (host_root / "jobs").exists()  # nothing started

    monkeypatch.setenv("HF_TOKEN", hub.token)
    hub.repos["tester/open"] = Repo(private=False)
    r = launch("hf://tester/open")
    assert r.exit_code == ExitCode.BAD_SPEC and "public repo" in r.stderr
    assert not (host_root / "jobs").exists()


def test_push_keeps_the_newest_and_resume_skips_a_damaged_one(tmp_path, hub):
    import io
    import os

    from rich.console import Console

    from agent import backup
    from agent.hub_mirror import push
    from agent.paths import JobDir
    from launcher.errors import RemoteError
    from launcher.hub.backups import HubMirror, fetch_to_laptop

    repo = "tester/ckpt"
    job = JobDir(tmp_path / "job")
    job.make_dirs()
    request = {"token": hub.token, "repo": repo, "keep": 2, "endpoint": hub.url, "disable_xet": True}
    names = []
    for step in (10, 20, 30):
        ckpt = job.checkpoints / f"step-{step}"
        ckpt.mkdir()
        (ckpt / "state.json").write_text(json.dumps({"step": step}))
        (ckpt / "weights.bin").write_bytes(os.urandom(200_000))
        b = backup.take(job, f"step-{step}", step)
        names.append(b.name)
        if step == 10:  # something of the user's own in the repo, not a backup
            hub.repos.setdefault(repo, Repo(private=True)).files["README.md"] = b"mine"
        assert push(job, b.name, request)["ok"]
    on_hub = hub.backups(repo)
    assert sorted(on_hub) == sorted(names[1:])           # keep: 2, the oldest deleted in the same commit
    assert hub.repos[repo].files["README.md"] == b"mine"  # not a backup: left alone
    assert push(job, "20990101T000000-step9", request) == {
        "ok": False, "gone": True, "error": "backup 20990101T000000-step9 is not on the host (pruned)"}
    assert push(job, "../../outside", request) == {"ok": False,
                                                   "error": "'../../outside' is not a backup name: not pushed"}

    # The newest on the Hub lost a byte: resume takes the one before it, and says so.
    hub.repos[repo].files[f"{names[2]}/data/step-30/state.json"] = b'{"step": 3}'
    out = io.StringIO()
    mirror = HubMirror(repo, hub.token, hub.url, True)
    got = fetch_to_laptop(mirror, tmp_path / "dl", Console(file=out, width=200))
    assert got.name == names[1] and json.loads((got / "data" / "step-20" / "state.json").read_text())["step"] == 20
    assert f"skipping backup {names[2]}" in out.getvalue() and "state.json has 11 bytes" in out.getvalue()
    assert sorted(p.name for p in (tmp_path / "dl" / "backups").iterdir()) == [names[1]]  # nothing half-done

    hub.down = True  # the network goes away: one line, and a retry is the answer
    with pytest.raises(RemoteError) as err:
        fetch_to_laptop(mirror, tmp_path / "dl2", Console(file=io.StringIO()))
    assert "reading hf://tester/ckpt failed" in err.value.what


def test_a_kaggle_session_ends_and_the_job_goes_on_elsewhere(tether, project, tmp_path, hub, monkeypatch):
    """The kernel reads HF_TOKEN from the notebook's Kaggle Secrets, pushes its backups; the
    session ends (the deadline: final backup, pushed); resume --on an SSH host carries on. That
    host's Python has no huggingface_hub: the backup comes through the laptop, and the job
    says its own backups could not follow it."""
    from fake_kaggle import FakeKaggle

    for k, v in {"KAGGLE_API_ENVIRONMENT": "TEST", "KAGGLE_USERNAME": "tetheruser", "KAGGLE_KEY": "kaggle-test-key",
                 "KAGGLE_CONFIG_DIR": str(tmp_path / "no-kaggle-dir")}.items():
        monkeypatch.setenv(k, v)
    kaggle = FakeKaggle(tmp_path / "kaggle")
    try:
        secrets_file = tmp_path / "notebook-secrets.json"
        secrets_file.write_text(json.dumps({"HF_TOKEN": hub.token}))
        kaggle.env.pop("HF_TOKEN", None)  # not in the kernel's environment: only in its secrets
        kaggle.env.update(PYTHONPATH=str(Path(__file__).parent / "kaggle_notebook"),
                          FAKE_KAGGLE_SECRETS=str(secrets_file))
        repo = "tester/kaggle-ckpt"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
        bare = tmp_path / "bare" / "bin" / "python"  # no huggingface_hub in it
        spec = project(f"""
            name: onkaggle
            host: {{provider: kaggle, gpu: NvidiaTeslaT4, session_hours: 0.008, root: {tmp_path / "moved"},
                    python: {bare}}}
            run: python3 train.py 400 0.1 25
            heartbeat: {{every_s: 0.5}}
            limits: {{margin_s: 8}}  # the final push must fit before the session ends
            backup: {{every_min: 10, keep: 2, mirror: "hf://{repo}"}}
        """, {"train.py": RESUMABLE})
        job = launched_id(tether("launch", spec))
        assert hub.token not in kaggle.saved[0]["text"]  # the kernel's source never holds it
        wait_for(lambda: status_json(tether, job)["state"] == "STOPPED" or None, 90, what="the session's end")
        assert "deadline" in status_json(tether, job)["reason"]
        on_hub = hub.backups(repo)
        assert on_hub, "the final backup never reached the Hub"
        newest = max(on_hub.values(), key=lambda m: m["created"])

        r = tether("resume", job, "--on", "testhost")
        assert r.exit_code == 0, r
        assert "the backup comes through this laptop" in r.stdout
        assert f"brought backup {newest['name']} (step {newest['step']}) to the new host" in r.stdout
    finally:
        kaggle.stop()
    done = wait_state(tether, job, "SUCCEEDED", timeout=120)
    assert done["step"] == 399 and done["provider"] == "ssh"
    assert "did not reach hf://tester/kaggle-ckpt (huggingface_hub is not installed" in done["reason"]
    log = (tmp_path / "moved" / "jobs" / job / "logs" / "workload.log").read_text()
    assert log.startswith(f"resumed at {newest['step'] + 1}")


def test_without_a_token_the_end_says_so_instead_of_waiting(tmp_path):
    """A kernel with no HF_TOKEN secret: the backups cannot leave; the job still ends at once,
    and its final reason says which backup did not reach the Hub."""
    import time

    from agent.hostops import create_job, start
    from agent.job_status import status
    from agent.paths import JobDir, Root

    root = Root(tmp_path / "root")
    (root.code("p")).mkdir(parents=True)
    (root.code("p") / "s.py").write_text(
        "import json, os, time\nfrom agent import progress\n"
        "d = os.path.join(progress.checkpoint_dir(), 'step-1'); os.makedirs(d)\n"
        "json.dump({'step': 1}, open(os.path.join(d, 'state.json'), 'w'))\n"
        "progress.report(1, checkpoint='step-1'); time.sleep(3)\n")
    spec = {"name": "t", "heartbeat": {"every_s": 0.2},
            "backup": {"every_min": 0.01, "mirror": "hf://tester/x", "mirror_wait_s": 600}}
    job = JobDir(create_job(root, "p", "j1", {"spec": spec, "job": {"id": "j1", "project": "p",
                                                                    "command": f"{sys.executable} s.py"},
                                              "secrets": {}})["job_dir"])
    began = time.monotonic()
    assert start(job)["started"]
    wait_for(lambda: status(job)["state"] == "SUCCEEDED", 60, what="SUCCEEDED")
    assert time.monotonic() - began < 60  # not mirror_wait_s
    st = status(job)
    assert "did not reach hf://tester/x (no Hub token reached the host" in st["reason"]
    assert st["mirror"]["error"].startswith("no Hub token") and st["mirror"]["pending"]


def test_a_slow_push_keeps_its_backup_while_newer_ones_come(tmp_path, hub):
    """Backups come faster than the link pushes them (keep: 1): the one being pushed is not
    pruned under it, so pushes succeed during training instead of failing one after another."""
    from agent.hostops import create_job, start
    from agent.job_status import status
    from agent.paths import JobDir, Root
    from agent.protocol import HUB_MIRROR_TOKEN

    hub.slow_preupload_s = 2.0
    root = Root(tmp_path / "root")
    root.code("p").mkdir(parents=True)
    (root.code("p") / "train.py").write_text(RESUMABLE)
    spec = {"name": "t", "heartbeat": {"every_s": 0.2},
            "backup": {"every_min": 0.005, "keep": 1, "mirror": "hf://tester/slow"}}
    job = JobDir(create_job(root, "p", "j1", {
        "spec": spec, "secrets": {HUB_MIRROR_TOKEN: hub.token},
        "job": {"id": "j1", "project": "p", "command": f"{sys.executable} train.py 80 0.1",
                "hub": {"endpoint": hub.url, "disable_xet": True}}})["job_dir"])
    assert start(job)["started"]
    wait_for(lambda: status(job)["state"] == "SUCCEEDED", 120, what="SUCCEEDED")
    done = events(job.path, "backup-done")
    pushed = events(job.path, "mirror-pushed")
    assert len(done) >= 5 and not events(job.path, "mirror-failed"), events(job.path, "mirror-failed")
    last_step_at = json.loads((job.path / "progress.jsonl").read_text().splitlines()[-1])["time"]
    assert pushed[0]["time"] < last_step_at  # pushed while training, not only at the end
    assert sorted(hub.backups("tester/slow")) == [pushed[-1]["name"]]  # keep: 1 on the Hub too
    assert [b.name for b in (job.path / "backups").iterdir() if not b.name.startswith(".")] == [pushed[-1]["name"]]
