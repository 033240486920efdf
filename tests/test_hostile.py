"""Playing the adversary: a workload that writes odd files into its job folder, a host whose
agent answers crafted data, edits made by ordinary tools, launches killed half-way, a full
disk. Nothing may hurt the laptop or lie about a backup or a sync. Real sshd, real agents,
real signals; the "hostile host" is the real shipped runtime with one function replaced."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import cannot_run_here, job_events as events, launched_id, status_json, wait_for, wait_state
from scripts import RESUMABLE

from launcher.errors import ExitCode


def spec(root, run, extra="", name="hostile"):
    return f"""
        name: {name}
        host: {{provider: ssh, address: testhost, root: {root}}}
        run: {run}
        heartbeat: {{every_s: 0.3, stall_after_s: 30}}
        stop: {{grace_s: 5}}
        restart: {{max: 2, on: [infra, stall], backoff_s: 0.2}}
        backup: {{every_min: 0.01, keep: 3}}
        {extra}
    """


def runtime_module(root: Path, module: str) -> Path:
    """The host's shipped copy of an agent module (there is one runtime per tether version)."""
    (found,) = list((root / "runtime").glob(f"*/agent/{module}"))
    return found


def make_hostile(root: Path, module: str, code: str) -> None:
    """The host's agent answers crafted data from now on: code is appended to its module."""
    path = runtime_module(root, module)
    path.write_text(path.read_text() + "\n\n# --- a hostile host ---\n" + code)


def plant_backup(job_dir: Path, name: str, manifest) -> Path:
    folder = job_dir / "backups" / name
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "data" / "x").write_text("x")
    if manifest is not None:
        (folder / "MANIFEST.json").write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    return folder


# -- names from the host are data, not paths ---------------------------------------------------


def test_bad_manifests_are_not_verified_and_never_crash_or_fail_the_job(tether, project, host_root):
    job = launched_id(tether("launch", project(spec(host_root, "python3 train.py 400 0.05 5"),
                                               {"train.py": RESUMABLE})))
    wait_for(lambda: len(events(host_root, job, "backup-done")) >= 2, 60, what="two backups")
    assert tether("stop", job).exit_code == 0
    jd = host_root / "jobs" / job
    victim = host_root / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    # Newer than every real backup, so a resume meets them first.
    plant_backup(jd, "29990101T000000-step1", "{not json")
    plant_backup(jd, "29990101T000001-step2", {"name": "../../../victim", "step": 2, "created": 1, "files": []})
    plant_backup(jd, "29990101T000002-step3", None)
    plant_backup(jd, "29990101T000003-step4", {"name": "29990101T000003-step4", "step": 4, "created": 1,
                                               "files": [{"path": "../../../victim/keep.txt", "size": 4,
                                                          "sha256": "0" * 64}]})
    r = tether("backups", job)
    assert r.exit_code == 0, r
    assert r.stdout.count("no:") == 4, r.stdout
    for why in ("not valid JSON", "names '../../../victim'", "MANIFEST.json is missing", "malformed file entry"):
        assert why in r.stdout, (why, r.stdout)
    listing = json.loads(tether("backups", job, "--json").stdout)
    assert sum(b["verified"] for b in listing) >= 2
    assert tether("pull", job, "--backup", "29990101T000000-step1", "--to", host_root / "p").exit_code \
        == ExitCode.NO_BACKUP

    assert tether("resume", job).exit_code == 0
    wait_for(lambda: [e for e in events(host_root, job, "resume") if e.get("backup")], 30, what="a resume")
    used = [e for e in events(host_root, job, "resume") if e.get("backup")][-1]
    assert not used["backup"].startswith("2999")  # the newest that verifies, not a planted one
    assert status_json(tether, job)["state"] == "RUNNING"
    assert not [e for e in events(host_root, job) if e["event"] == "agent-error"]
    tether("stop", job)
    assert (victim / "keep.txt").read_text() == "mine"


def test_prune_never_deletes_outside_backups(tether, project, host_root):
    """A manifest whose name points elsewhere, as the oldest backup: pruning it must not
    follow the name."""
    victim = host_root / "victim"
    victim.mkdir(parents=True)
    (victim / "keep.txt").write_text("mine")
    plant = """
import json, os
from agent import progress
d = os.path.join(os.environ["TETHER_JOB_DIR"], "backups", "20000101T000000-step0")
os.makedirs(os.path.join(d, "data"), exist_ok=True)
json.dump({"name": "../../../victim", "step": 0, "created": 0, "files": []},
          open(os.path.join(d, "MANIFEST.json"), "w"))
"""
    train = plant + RESUMABLE
    body = spec(host_root, "python3 train.py 200 0.05 3").replace("keep: 3", "keep: 1")
    job = launched_id(tether("launch", project(body, {"train.py": train})))
    wait_for(lambda: len(events(host_root, job, "backup-done")) >= 3, 60, what="three backups")
    tether("stop", job)
    assert (victim / "keep.txt").read_text() == "mine"
    assert (host_root / "jobs" / job / "backups" / "20000101T000000-step0").is_dir()  # not a backup: left alone


def test_laptop_mirror_refuses_names_from_a_hostile_host(tether, project, host_root, tmp_path):
    laptop_victim = tmp_path / "laptop-victim"
    laptop_victim.mkdir()
    (laptop_victim / "precious.txt").write_text("mine")
    body = spec(host_root, "python3 train.py 400 0.05 5", "").replace(
        "backup: {every_min: 0.01, keep: 3}", "backup: {every_min: 0.01, keep: 1, mirror: laptop}")
    job = launched_id(tether("launch", project(body, {"train.py": RESUMABLE})))
    wait_for(lambda: events(host_root, job, "backup-done"), 60, what="a backup")
    hostile = os.path.relpath(laptop_victim, Path(os.environ["TETHER_HOME"]) / "mirrors" / job / "backups")
    make_hostile(host_root, "backup.py", f"""
_real_summary = backup_summary
def backup_summary(job, check):
    return [{{"name": {hostile!r}, "step": 1, "source": "", "created": 9e9, "size": 1, "files": 1,
             "verified": True, "problem": None}}] + _real_summary(job, check)
""")
    r = tether("status", job)
    assert r.exit_code == 0, r
    assert "Traceback" not in r.stdout + r.stderr
    assert (laptop_victim / "precious.txt").read_text() == "mine"
    tether("stop", job)  # so no prune (keep: 1) races the pull below
    got = tether("pull", job, "--backup", "latest", "--to", tmp_path / "b")
    assert got.exit_code == 0, got
    assert (laptop_victim / "precious.txt").read_text() == "mine"


def test_crafted_status_answers_are_inert_on_the_terminal(tether, project, host_root):
    job = launched_id(tether("launch", project(spec(host_root, "sleep 30"))))
    wait_state(tether, job, "RUNNING")
    make_hostile(host_root, "job_status.py", """
_real_status = status
def status(job, recent=0):
    a = _real_status(job, recent)
    a.update(reason="[/]\\x1b]52;c;aGVsbG8=\\x07 [bold red]fake[/]", step="seven",
             metrics={"[/]": "\\x1b[2J[/x]", "loss": float("nan"), "ok": 0.5},
             warnings=["\\x1b]0;owned\\x07title", 7], backup={"last": "[/]", "in_progress": "yes"},
             mirror={"repo": "[/]", "error": "\\x1b[31mred", "retry_in_s": "soon"},
             resources={"gpus": [{"index": "0", "util_percent": "x"}], "ram_used_gb": "lots"})
    return a
""")
    r = tether("status", job)
    assert r.exit_code == 0, r
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout
    assert "[/]" in r.stdout and "[bold red]fake[/]" in r.stdout  # shown literally, not rendered
    js = status_json(tether, job)
    assert js["step"] is None and js["metrics"] == {"[/]": "\x1b[2J[/x]", "ok": 0.5}  # JSON: data as data
    make_hostile(host_root, "job_status.py", """
def status(job, recent=0):
    return {"exists": True, "state": "PWNED"}
""")
    r = tether("status", job)
    assert r.exit_code == ExitCode.UNREACHABLE and "Traceback" not in r.stdout + r.stderr, r
    js = json.loads(tether("status", job, "--json").stdout)
    assert js["state"] == "UNREACHABLE" and "unknown job state 'PWNED'" in js["reason"]
    tether("stop", job)


# -- a backup that exists verifies --------------------------------------------------------------

REWRITES_IN_PLACE = """
import os, sys, time
from agent import progress
path = os.path.join(progress.checkpoint_dir(), "model.pt")
for step in range(int(sys.argv[1])):
    with open(path, "wb") as f:          # what torch.save(state, path) does: same name, same inode
        f.write(os.urandom(4096) + str(step).encode())
    progress.report(step, loss=1.0, checkpoint="model.pt")
    time.sleep(0.05)
"""


def test_checkpoint_rewritten_in_place_still_leaves_verified_backups(tether, project, host_root):
    job = launched_id(tether("launch", project(spec(host_root, "python3 train.py 200"),
                                               {"train.py": REWRITES_IN_PLACE})))
    wait_state(tether, job, "SUCCEEDED", timeout=60)
    listing = json.loads(tether("backups", job, "--json").stdout)
    assert listing, "backups were taken"
    assert all(b["verified"] for b in listing), listing


WRITES_INTO_ITS_RESUME_POINT = """
import os, sys, time
from agent import progress
if progress.resume_path():
    with open(os.path.join(progress.resume_path(), "state.bin"), "r+b") as f:
        f.write(b"CLOBBERED")               # a workload scribbling on what it resumed from
    print("resumed", flush=True)
    sys.exit(0)
d = os.path.join(progress.checkpoint_dir(), "c")
os.makedirs(d, exist_ok=True)
open(os.path.join(d, "state.bin"), "wb").write(os.urandom(2048))
progress.report(1, checkpoint="c")
time.sleep(1.5)
os.kill(os.getpid(), 9)
"""


def test_writing_into_the_restored_checkpoint_leaves_the_backup_whole(tether, project, host_root):
    job = launched_id(tether("launch", project(spec(host_root, "python3 train.py"),
                                               {"train.py": WRITES_INTO_ITS_RESUME_POINT})))
    done = wait_state(tether, job, "SUCCEEDED", timeout=60)
    assert done["attempt"] == 1
    listing = json.loads(tether("backups", job, "--json").stdout)
    assert listing and all(b["verified"] for b in listing), listing


def test_prune_keeps_the_newest_backup_that_verifies(tmp_path):
    from agent import backup
    from agent.paths import JobDir

    job = JobDir(tmp_path / "job")
    job.make_dirs()
    names = []
    for step in range(3):
        (job.checkpoints / "w.bin").write_bytes(os.urandom(64))
        names.append(backup.take(job, "", step).name)
        time.sleep(1.01)  # one backup a second: names are stamped to the second
    for name in names[1:]:  # the two newest are damaged after the fact
        (job.backups / name / "data" / "w.bin").write_bytes(b"broken")
    assert backup.prune(job, keep=1) == [names[1]]
    left = [b.name for b in backup.list_backups(job)]
    assert left == [names[0], names[2]]  # the newest, and the newest that verifies


def test_empty_announced_checkpoint_is_not_a_backup(tether, project, host_root):
    train = ("import os, time\nfrom agent import progress\n"
             "os.makedirs(os.path.join(progress.checkpoint_dir(), 'empty'), exist_ok=True)\n"
             "progress.report(1, checkpoint='empty')\ntime.sleep(2)\n")
    job = launched_id(tether("launch", project(spec(host_root, "python3 train.py"), {"train.py": train})))
    wait_state(tether, job, "SUCCEEDED", timeout=30)
    assert not events(host_root, job, "backup-done")
    failed = events(host_root, job, "backup-failed")
    assert failed and "is empty" in failed[0]["error"]


KILLS_ITSELF_ONCE = """
import os, sys, time
from agent import progress
start = 0
if progress.resume_path():
    start = int(open(os.path.join(progress.resume_path(), "step.txt")).read()) + 1
    print("resumed at", start, flush=True)
for step in range(start, 30):
    progress.report(step, loss=1.0)
    if step == 10:
        d = os.path.join(progress.checkpoint_dir(), "s")
        os.makedirs(d, exist_ok=True)
        open(os.path.join(d, "step.txt"), "w").write(str(step))
        progress.report(step, checkpoint="s")
    if step == 12 and not progress.resume_path():
        os.kill(os.getpid(), 9)
    time.sleep(0.05)
"""


def test_restart_resumes_from_live_checkpoints_when_no_backup_verifies(tether, project, host_root):
    body = spec(host_root, "python3 train.py").replace("every_min: 0.01", "every_min: 600")  # no backups
    job = launched_id(tether("launch", project(body, {"train.py": KILLS_ITSELF_ONCE})))
    done = wait_state(tether, job, "SUCCEEDED", timeout=60)
    assert done["attempt"] == 1 and done["resumed_unverified"] is True
    assert "resumed at 11" in (host_root / "jobs" / job / "logs" / "workload.log").read_text()
    resumed = events(host_root, job, "resume")[-1]
    assert resumed["unverified"] is True and resumed["live"] == "s" and resumed["step"] == 10
    assert "no backup verified" in tether("status", job).stdout


def test_backup_that_stops_verifying_is_a_warning_at_once(tether, project, host_root):
    job = launched_id(tether("launch", project(spec(host_root, "python3 train.py 400 0.05", "").replace(
        "every_min: 0.01", "every_min: 0.02"), {"train.py": RESUMABLE})))
    first = wait_for(lambda: events(host_root, job, "backup-done"), 60, what="a backup")[0]
    data = host_root / "jobs" / job / "backups" / first["name"] / "data"
    victim = next(p for p in data.rglob("*") if p.is_file())
    victim.write_bytes(b"damaged")
    wait_for(lambda: any(first["name"] in w and "does not verify" in w
                         for w in status_json(tether, job)["warnings"]), 10, what="the warning")
    assert events(host_root, job, "backup-not-verified")[0]["name"] == first["name"]
    tether("stop", job)


def test_no_verified_backup_has_its_own_exit_code(tether, project, host_root, tmp_path):
    job = launched_id(tether("launch", project(spec(host_root, "echo ok"))))
    wait_state(tether, job, "SUCCEEDED")
    r = tether("pull", job, "--backup", "latest", "--to", tmp_path / "x")
    assert r.exit_code == ExitCode.NO_BACKUP != ExitCode.NOT_FOUND
    assert "no verified backup" in r.stderr


# -- sync never reports a file as sent that was not ---------------------------------------------


@pytest.mark.parametrize("transport", ["rsync", "tar"])
def test_changed_content_with_same_size_and_mtime_reaches_the_host(tether, project, host_root, monkeypatch,
                                                                    transport):
    if transport == "tar":
        monkeypatch.setenv("TETHER_NO_RSYNC", "1")
    path = project(spec(host_root, "cat data.txt > $TETHER_OUTPUT_DIR/seen.txt"), {"data.txt": "aaaa"})
    data = path.parent / "data.txt"
    st = data.stat()
    first = launched_id(tether("launch", path))
    wait_state(tether, first, "SUCCEEDED")
    data.write_text("bbbb")  # same size; then the mtime put back, as cp -p or rsync -t would
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = launched_id(tether("launch", path))
    wait_state(tether, second, "SUCCEEDED")
    assert (host_root / "code" / "hostile" / "data.txt").read_text() == "bbbb"
    assert (host_root / "jobs" / second / "outputs" / "seen.txt").read_text() == "bbbb"


DIGESTS = """
import glob, hashlib, json, os
seen = {f: hashlib.sha256(open(f, "rb").read()).hexdigest() for f in glob.glob("*.txt") + glob.glob("*.py")}
json.dump(seen, open(os.path.join(os.environ["TETHER_OUTPUT_DIR"], "seen.json"), "w"))
"""


def _tether_cmd(*args, env=None, **kw):
    return subprocess.Popen([sys.executable, "-m", "launcher", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_parallel_launches_of_one_project_each_run_their_own_code(tether, project, host_root, tmp_path):
    env = dict(os.environ)
    procs = []
    for i in range(6):
        work = tmp_path / f"w{i}"
        work.mkdir()
        (work / "version.txt").write_text(f"launch {i}\n" * (200 + i))
        for k in range(20):
            (work / f"mod{k}.py").write_text(f"# launch {i} module {k}\n" * 50)
        (work / "digests.py").write_text(DIGESTS)
        (work / "job.yaml").write_text(spec(host_root, "python3 digests.py", name="par"))
        procs.append((i, work, _tether_cmd("launch", work / "job.yaml", env=env)))
    jobs = {}
    for i, work, p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, (out, err)
        jobs[i] = next(line.split()[2] for line in out.splitlines() if line.startswith("launched job "))
    for i, job in jobs.items():
        wait_state(tether, job, "SUCCEEDED", timeout=60)
        work = tmp_path / f"w{i}"
        want = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in work.iterdir() if p.suffix in (".txt", ".py")}
        seen = json.loads((host_root / "jobs" / job / "outputs" / "seen.json").read_text())
        assert seen == want, f"launch {i} ran other files"


def test_launch_killed_at_any_moment_leaves_a_registered_job_or_nothing(tether, project, host_root, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_killed_launch_secret")
    path = project(spec(host_root, "sleep 2", "secrets: [HF_TOKEN]"),
                   {f"f{i}.txt": f"{i}" * 20000 for i in range(30)})
    env = dict(os.environ)
    for delay in (None, 0.3, 0.8, 1.5, 2.5):
        p = _tether_cmd("launch", path, env=env)
        if delay is None:  # right after its sync line
            for line in p.stdout:
                if line.startswith("sync:"):
                    break
        else:
            time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        (path.parent / "f0.txt").write_text(f"changed {delay}")  # the next launch has something to send
    registered = {j["id"] for j in json.loads(tether("jobs", "--json").stdout)}
    on_host = {p.name for p in (host_root / "jobs").iterdir()} if (host_root / "jobs").is_dir() else set()
    assert on_host <= registered, (on_host, registered)
    secrets = [p for p in host_root.rglob("*") if p.is_file() and b"hf_killed_launch_secret" in p.read_bytes()]
    assert secrets == []
    ok = launched_id(tether("launch", path))  # a whole launch afterwards cleans what the killed ones left
    wait_state(tether, ok, "SUCCEEDED")
    assert not [p for p in (host_root / "code").rglob("*.tether-tmp")]
    for job in registered:
        r = tether("status", job)
        assert r.exit_code == 0 and "Traceback" not in r.stdout, r


# -- a full disk is survived --------------------------------------------------------------------


CHATTY_ON_A_FULL_DISK = """
import os, sys, time
from agent import progress
hog = os.path.join(os.environ["TETHER_JOB_DIR"], "..", "..", "hog.bin")
with open(hog, "wb", buffering=0) as f:   # fill the disk
    try:
        while True:
            f.write(b"x" * 65536)
    except OSError:
        pass
for step in range(60):                # chatter the log cannot store; never blocked on stdout
    print("line %d " % step + "y" * 2000, flush=True)
    progress.report(step) if step % 10 == 0 else None
    time.sleep(0.05)
open(os.path.join(os.environ["TETHER_JOB_DIR"], "..", "..", "disk-was-full"), "w").close()
time.sleep(1.5)
os.unlink(hog)
print("done", flush=True)
"""


@pytest.fixture
def tiny_root(tmp_path):
    if os.geteuid() != 0:
        cannot_run_here("mounting a small tmpfs needs root (CI runs as root)")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)], check=True)
    yield mnt / "root"
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_agent_survives_a_full_disk_and_never_blocks_the_workload(tether, project, tiny_root):
    body = spec(tiny_root, "python3 train.py", "").replace("stall_after_s: 30", "stall_after_s: 10")
    job = launched_id(tether("launch", project(body, {"train.py": CHATTY_ON_A_FULL_DISK})))
    seen = {}

    def full_seen():
        st = status_json(tether, job)
        if any("disk full" in w for w in st["warnings"]):
            seen["st"] = st
        return seen or st["state"] in ("SUCCEEDED", "FAILED")

    wait_for(full_seen, 60, what="disk full in status")
    assert "st" in seen, "status said disk full while it was"
    jd = tiny_root / "jobs" / job
    try:
        done = wait_state(tether, job, "SUCCEEDED", timeout=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nevents: {(jd / 'events.jsonl').read_text()[-3000:]}\n"
                             f"agent.log: {(jd / 'logs' / 'agent.log').read_text()[-3000:]}\n"
                             f"ps: {subprocess.run(['ps', 'aux'], capture_output=True, text=True).stdout[-3000:]}")
    assert done["attempt"] == 0  # not stalled, not restarted: the workload never hung on its pipe
    for line in (tiny_root / "jobs" / job / "events.jsonl").read_bytes().splitlines():
        json.loads(line)  # whole lines or none
    assert "done" in (tiny_root / "jobs" / job / "logs" / "workload.log").read_text()


# -- secrets live as briefly as possible ----------------------------------------------------------

# The token it looks for arrives encoded, so no file and no environment holds it by our doing.
LOOKS_FOR_THE_TOKEN = """
import base64, glob, json, os, time
from agent import progress
token = base64.b64decode(os.environ["LOOK_FOR"]).decode()[::-1]
found = []
time.sleep(1)
if token in json.dumps(dict(os.environ)):
    found.append("own environment")
for path in glob.glob("/proc/[0-9]*/environ") + glob.glob("/proc/[0-9]*/cmdline"):
    try:
        data = open(path, "rb").read()
    except OSError:
        continue
    if token.encode() in data:
        found.append(path)
root = os.path.join(os.environ["TETHER_JOB_DIR"], "..", "..")
for dirpath, _, names in os.walk(root):
    for n in names:
        try:
            if token.encode() in open(os.path.join(dirpath, n), "rb").read():
                found.append(os.path.join(dirpath, n))
        except OSError:
            pass
open(os.path.join(progress.output_dir(), "found.json"), "w").write(json.dumps(found))
"""


def test_the_hub_mirror_token_is_not_readable_by_the_workload(tether, project, host_root, hub):
    import base64

    encoded = base64.b64encode(hub.token[::-1].encode()).decode()
    body = spec(host_root, "python3 look.py", f"env: {{LOOK_FOR: '{encoded}'}}").replace(
        "backup: {every_min: 0.01, keep: 3}", "backup: {every_min: 10, keep: 3, mirror: 'hf://tester/hostile-ckpt'}")
    job = launched_id(tether("launch", project(body, {"look.py": LOOKS_FOR_THE_TOKEN})))
    wait_state(tether, job, ["SUCCEEDED", "FAILED"], timeout=90)
    assert json.loads((host_root / "jobs" / job / "outputs" / "found.json").read_text()) == []


# -- stop means stopped -------------------------------------------------------------------------


QUIET_LOOP = """
import time
from agent import progress
for step in range(2000):   # prints nothing: it outlives its agent (no pipe to break)
    progress.report(step)
    time.sleep(0.05)
"""


def test_stop_of_a_lost_job_stops_its_orphaned_workload(tether, project, host_root):
    job = launched_id(tether("launch", project(spec(host_root, "python3 train.py"), {"train.py": QUIET_LOOP})))
    wait_for(lambda: (status_json(tether, job)["step"] or 0) > 3, 30, what="steps")
    jd = host_root / "jobs" / job
    state = json.loads((jd / "state.json").read_text())
    os.kill(state["agent_pid"], signal.SIGKILL)
    workload = state["workload_pgid"]
    wait_state(tether, job, "LOST", timeout=10)
    r = tether("stop", job)
    assert r.exit_code == 0, r
    assert "agent was not running" in r.stdout and f"pgid {workload}" in r.stdout
    wait_for(lambda: not Path(f"/proc/{workload}").exists() or
             "Z" in Path(f"/proc/{workload}/stat").read_text().split(")")[1][:3], 10, what="the workload to die")
    assert status_json(tether, job)["state"] == "STOPPED"


def _agent_job(tmp_path, teardown_url: str, wait_s: float) -> Path:
    """A job folder as create-job leaves it for a rented host with autodown."""
    from agent.paths import Root

    job = Root(tmp_path / "root").job("deadbeef")
    job.make_dirs()
    job.code.mkdir(parents=True, exist_ok=True)
    job.spec.write_text(json.dumps({"spec": {"name": "rented", "heartbeat": {"every_s": 0.2}},
                                    "job": {"id": "deadbeef", "project": "rented", "command": "true",
                                            "autodown": True, "autodown_wait_s": wait_s}}))
    job.teardown.write_text(json.dumps({"method": "DELETE", "url": teardown_url, "headers": {}}))
    return job.path


@pytest.fixture
def teardown_server():
    from http.server import BaseHTTPRequestHandler, HTTPServer

    calls = []

    class Handler(BaseHTTPRequestHandler):
        def do_DELETE(self):
            calls.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/instances/1/", calls
    server.shutdown()


def _run_agent(job_dir: Path) -> subprocess.Popen:
    runtime = Path(__file__).resolve().parent.parent
    return subprocess.Popen([sys.executable, "-m", "agent", "run", str(job_dir)],
                            env=dict(os.environ, PYTHONPATH=str(runtime)), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_an_ended_agent_waiting_for_its_results_exits_on_sigterm(tmp_path, teardown_server):
    url, calls = teardown_server
    job_dir = _agent_job(tmp_path, url, wait_s=3600)
    agent = _run_agent(job_dir)
    try:
        wait_for(lambda: b"waiting-for-results-safe" in (job_dir / "events.jsonl").read_bytes()
                 if (job_dir / "events.jsonl").exists() else False, 20, what="the agent to wait")
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=5) is not None
    finally:
        agent.kill()
    assert calls == []  # told to go: it did not destroy the host on its way out


def test_a_rented_host_never_waits_forever_for_a_pull(tmp_path, teardown_server):
    url, calls = teardown_server
    job_dir = _agent_job(tmp_path, url, wait_s=2)
    (job_dir / "outputs" / "model.bin").write_bytes(b"weights")
    agent = _run_agent(job_dir)
    try:
        assert agent.wait(timeout=30) == 0
    finally:
        agent.kill()
    assert calls == ["/instances/1/"]
    evs = [json.loads(x) for x in (job_dir / "events.jsonl").read_text().splitlines()]
    unsaved = [e for e in evs if e["event"] == "autodown-unsaved"]
    assert unsaved and "outputs/ (1 file(s)) not pulled" in unsaved[0]["unsaved"]
    assert "not pulled" in json.loads((job_dir / "state.json").read_text())["reason"]


# -- spec edge cases ----------------------------------------------------------------------------


@pytest.mark.parametrize("bad, what", [
    ('env: {"MY-VAR": x}', "not an environment variable name"),
    ('env: {"1ST": x}', "not an environment variable name"),
    ('name: "ok\\n"', "name"),
    ('secrets: ["TOKEN\\n"]', "not an environment variable name"),
    ('backup: {mirror: "hf://u/repo\\n"}', "not a Hub repo name"),
    ('publish: {repo: "u/repo\\n"}', "not a Hub repo name"),
])
def test_spec_names_match_whole_strings(tether, project, host_root, bad, what):
    body = spec(host_root, "echo ok")
    key = bad.split(":")[0]
    body = "\n".join(line for line in body.splitlines() if not line.strip().startswith(key + ":")) \
        + f"\n        {bad}\n"
    r = tether("launch", project(body), "--dry-run")
    assert r.exit_code == ExitCode.BAD_SPEC, r
    assert what in r.stderr, r.stderr
