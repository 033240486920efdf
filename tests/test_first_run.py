"""The script a new user already has, launched unchanged: a plain training loop that saves to a
fixed path, keeps its data out of git, and only prints its progress. Its first launch works,
or fails with one line saying what to change; and tether shows how it is doing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import job_events as events, launched_id, status_json, wait_for, wait_state

from launcher.errors import ExitCode

# In the style of a well-known small GPT trainer: data ignored by git, a fixed checkpoint
# path written in place, progress printed as "iter N: loss X". Resumes from its own file.
NANO = """
import os, pickle, sys, time
iters = int(sys.argv[1]) if len(sys.argv) > 1 else 30
pause = float(sys.argv[2]) if len(sys.argv) > 2 else 0.05
data = open("data/train.bin", "rb").read()           # ignored by .gitignore: must be sent on purpose
ckpt = os.path.join(os.environ.get("TETHER_CHECKPOINT_DIR", "out"), "ckpt.pt")
start = 0
if os.path.exists(ckpt):
    start = pickle.load(open(ckpt, "rb"))["iter"] + 1
for it in range(start, iters):
    loss = 4.0 / (it + 1)
    print(f"iter {it}: loss {loss:.4f}, time 12.3ms", flush=True)
    if it % 5 == 4:
        os.makedirs(os.path.dirname(ckpt), exist_ok=True)
        with open(ckpt, "wb") as f:                   # what torch.save(state, ckpt) does
            pickle.dump({"iter": it, "loss": loss}, f)
    time.sleep(pause)
"""

PATTERN = r"iter (?P<step>\d+): loss (?P<loss>[\d.]+)"  # as written in the YAML


def spec(root, run, extra="", name="nano"):
    return f"""
        name: {name}
        host: {{provider: ssh, address: testhost, root: {root}}}
        run: {run}
        heartbeat: {{every_s: 0.3, stall_after_s: 30}}
        restart: {{max: 1, on: [infra, stall], backoff_s: 0.2}}
        backup: {{every_min: 0.02, keep: 3}}
        {extra}
    """


def nano_project(project, host_root, run="python train.py 30", extra="", tetherignore=True):
    files = {"train.py": NANO, "data/train.bin": b"\x00" * 1000, ".gitignore": "data/\n*.bin\nout/\n"}
    if tetherignore:
        files[".tetherignore"] = "!data/\n!data/train.bin\n"
    return project(spec(host_root, run, extra), files)


# -- launching ----------------------------------------------------------------------------------

TORCH_SCRIPT = "import torch, sys; print('torch', torch.__version__, 'from', sys.executable, flush=True)"


def test_python_and_pip_in_run_are_host_python(tether, project, host_root):
    """host.python is a venv with torch; a bare `python` on this machine's PATH has none."""
    venv_python = sys.executable
    body = spec(host_root, "python -c \"$(cat t.py)\" && pip --version && python3 -c 'import torch'",
                "setup: pip --version > $TETHER_JOB_DIR/setup-pip.txt").replace(
        "root: " + str(host_root) + "}", f"root: {host_root}, python: {venv_python}}}")
    path = project(body, {"t.py": TORCH_SCRIPT})
    dry = tether("launch", path, "--dry-run")
    assert dry.exit_code == 0, dry
    assert f"python: {venv_python} (Python 3." in dry.stdout and "runs `python`, `python3` and `pip`" in dry.stdout
    job = launched_id(tether("launch", path))
    wait_state(tether, job, "SUCCEEDED")
    log = (host_root / "jobs" / job / "logs" / "workload.log").read_text()
    assert f"from {venv_python}" in log
    assert str(Path(venv_python).parent.parent) in log  # pip is the venv's
    assert str(Path(venv_python).parent.parent) in (host_root / "jobs" / job / "setup-pip.txt").read_text()


def test_dry_run_names_what_sync_leaves_out_and_why(tether, project, host_root):
    path = nano_project(project, host_root, tetherignore=False)
    r = tether("launch", path, "--dry-run")
    assert r.exit_code == 0, r
    assert "not sent: data/  (.gitignore line 1: data/)" in r.stdout
    assert "`!data/`" in r.stdout


def test_a_job_missing_an_ignored_file_says_which_rule_left_it_out(tether, project, host_root):
    path = nano_project(project, host_root, tetherignore=False)
    job = launched_id(tether("launch", path))
    wait_state(tether, job, "FAILED")
    r = tether("status", job)
    assert "FileNotFoundError" in r.stdout  # the error, from the log's last lines
    assert "data/train.bin is on this laptop but was not sent (.gitignore line 1: data/)" in r.stdout
    assert "`!data/`" in r.stdout
    # ... and with the negation the docs show, the same script runs.
    (path.parent / ".tetherignore").write_text("!data/\n!data/train.bin\n")
    ok = launched_id(tether("launch", path))
    wait_state(tether, ok, "SUCCEEDED")


def test_each_attempt_is_marked_in_the_log(tether, project, host_root):
    script = "import os, time\nprint('started', flush=True)\ntime.sleep(0.5)\n" \
             "if os.environ['TETHER_ATTEMPT'] == '0': os.kill(os.getpid(), 9)\n"
    job = launched_id(tether("launch", project(spec(host_root, "python3 k.py"), {"k.py": script})))
    wait_state(tether, job, "SUCCEEDED")
    log = (host_root / "jobs" / job / "logs" / "workload.log").read_text()
    assert log.count("started") == 2
    assert "--- attempt 1, after workload killed by SIGKILL ---" in log
    assert "out of memory" not in json.dumps(events(host_root, job))  # no OOM-killer evidence


def test_a_host_that_refuses_says_where_and_why(tether, project, host_root):
    from sshd import free_port

    port = free_port()
    body = spec(host_root, "echo hi").replace("address: testhost,", f"address: root@127.0.0.1:{port}, retry_s: 2,")
    r = tether("launch", project(body))
    assert r.exit_code == ExitCode.UNREACHABLE
    assert f"cannot reach 127.0.0.1 port {port}: connection refused" in r.stderr
    assert "Errno None" not in r.stderr + r.stdout and "Traceback" not in r.stderr
    assert "retrying in" in r.stdout  # while it waited, it said so
    assert len(r.stderr.strip().splitlines()) == 1


def test_messages_speak_of_what_happens_not_of_verbs(tether, project, host_root):
    job = launched_id(tether("launch", project(spec(host_root, "echo done"))))
    wait_state(tether, job, "SUCCEEDED")
    r = tether("resume", job)
    assert r.exit_code != 0
    assert "preparing the job to resume failed on the host: the job already succeeded" in r.stderr
    assert "agent prepare-resume" not in r.stderr


def test_version(tether):
    r = tether("--version")
    assert r.exit_code == 0 and r.stdout.startswith("tether 0.")


# -- knowing how it is doing, without changing the script ------------------------------------------


def test_printed_lines_become_progress_with_rate_and_eta(tether, project, host_root):
    extra = f"progress: {{pattern: '{PATTERN}', total: 200}}"
    path = nano_project(project, host_root, run="python3 train.py 200 0.05", extra=extra)
    job = launched_id(tether("launch", path))
    st = wait_for(lambda: (s := status_json(tether, job)).get("steps_per_s") and s, 60, what="a rate")
    assert st["step"] >= 1 and "loss" in st["metrics"] and st["total_steps"] == 200
    assert st["eta_s"] is not None and st["eta_s"] > 0
    shown = tether("status", job).stdout
    assert "/200" in shown and "it/s" in shown and "ETA" in shown and "loss=" in shown
    assert "last output" in shown and "last progress" in shown  # a hang would show before stall_after_s
    done = wait_state(tether, job, "SUCCEEDED", timeout=60)
    assert done["step"] == 199
    backups = json.loads(tether("backups", job, "--json").stdout)
    assert backups and backups[-1]["step"] == 199  # the final backup is the end state


@pytest.mark.parametrize("pattern, why", [("iter (\\\\d+", "not a regular expression"),
                                          ("iter \\\\d+", "name what it captures")])
def test_a_bad_progress_pattern_is_refused_at_launch(tether, project, host_root, pattern, why):
    r = tether("launch", nano_project(project, host_root, extra=f"progress: {{pattern: '{pattern}'}}"))
    assert r.exit_code == ExitCode.BAD_SPEC and why in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# -- getting things back ------------------------------------------------------------------------


def test_pulled_results_do_not_travel_back_up(tether, project, host_root, monkeypatch):
    path = nano_project(project, host_root)
    job = launched_id(tether("launch", path))
    wait_state(tether, job, "SUCCEEDED")
    monkeypatch.chdir(path.parent)  # the user pulls from inside the workdir: ./nano-<id>/
    assert tether("pull", job, "--path", "checkpoints/").exit_code == 0
    assert (path.parent / f"nano-{job}" / "checkpoints" / "ckpt.pt").is_file()
    r = tether("launch", path, "--dry-run")
    assert f"not sent: nano-{job}/  (built-in: nano-{job}/ is where `tether pull` put results)" in r.stdout


def test_a_pull_that_finds_nothing_says_what_is_there(tether, project, host_root, tmp_path):
    script = "open('model.pt', 'wb').write(b'w' * 2048)\n"  # written where it runs, not in outputs/
    job = launched_id(tether("launch", project(spec(host_root, "python3 s.py"), {"s.py": script})))
    wait_state(tether, job, "SUCCEEDED")
    r = tether("pull", job, "--to", tmp_path / "got")
    assert r.exit_code == 0, r
    assert "pulled 0 files" in r.stdout and "code/model.pt" in r.stdout
    assert f"tether pull {job} --path code/model.pt" in r.stdout
    assert "artifacts: [code/model.pt]" in r.stdout
    assert tether("pull", job, "--path", "code/model.pt", "--to", tmp_path / "got").exit_code == 0
    assert (tmp_path / "got" / "code" / "model.pt").stat().st_size == 2048


TICKS = """
import time
for i in range(16):
    print("tick %d %.3f" % (i, time.time()), flush=True)
    time.sleep(0.5)
"""


def _logs_follow(job, env):
    # Unbuffered: a line read here is not read ahead into a buffer communicate() never sees.
    return subprocess.Popen([sys.executable, "-m", "launcher", "logs", job, "-f"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)


def test_logs_follow_is_live_line_by_line_when_piped(tether, project, host_root):
    job = launched_id(tether("launch", project(spec(host_root, "python3 ticks.py"), {"ticks.py": TICKS})))
    follower = _logs_follow(job, dict(os.environ))
    late = []
    try:
        for raw in follower.stdout:
            line = raw.decode()
            if line.startswith("tick "):
                late.append(time.time() - float(line.split()[2]))
    finally:
        follower.wait(timeout=60)
    assert follower.returncode == 0
    assert len(late) == 16  # nothing lost at the end
    assert sorted(late)[len(late) // 2] < 1.0, late  # each line while the job runs, not in a 4 KB block


COUNTS = """
import time
for i in range(40):
    print("line %d" % i, flush=True)
    time.sleep(0.25)
"""


def _own_host(own_sshd, tmp_path, monkeypatch, retry_s=60):
    conf = tmp_path / "own_config"
    conf.write_text(own_sshd.ssh_config("ownhost"))
    monkeypatch.setenv("TETHER_SSH_CONFIG", str(conf))
    return spec(tmp_path / "own-root", "python3 counts.py").replace(
        "address: testhost", f"address: ownhost, retry_s: {retry_s}")


def test_logs_follow_survives_a_killed_connection_without_losing_or_repeating_a_line(
        tether, project, own_sshd, tmp_path, monkeypatch):
    job = launched_id(tether("launch", project(_own_host(own_sshd, tmp_path, monkeypatch), {"counts.py": COUNTS})))
    follower = _logs_follow(job, dict(os.environ))
    got = [follower.stdout.readline() for _ in range(5)]
    own_sshd.kill_sessions()  # every connection to the host drops; the host itself stays
    out, err = follower.communicate(timeout=90)
    lines = [x.decode().strip() for x in got + out.splitlines(keepends=True) if x.startswith(b"line")]
    assert follower.returncode == 0, err
    assert lines == [f"line {i}" for i in range(40)], lines  # each once, in order
    assert b"reconnecting" in err


def test_a_host_gone_for_good_ends_logs_follow_with_one_line(tether, project, own_sshd, tmp_path, monkeypatch):
    body = _own_host(own_sshd, tmp_path, monkeypatch, retry_s=3)
    job = launched_id(tether("launch", project(body, {"counts.py": COUNTS})))
    follower = _logs_follow(job, dict(os.environ))
    assert follower.stdout.readline().startswith(b"line")
    own_sshd.stop()
    own_sshd.kill_sessions()
    _, err = follower.communicate(timeout=60)
    assert follower.returncode == ExitCode.UNREACHABLE, err
    assert b"ended early" in err and b"the job is not affected" in err


STOPS_ITSELF = """
import os, signal, time
from tether import progress
for step in range(3):
    progress.report(step)
    time.sleep(0.1)
os.kill(os.getpid(), signal.SIGSTOP)
"""


def test_stacks_of_a_hang_are_reachable_and_say_when_they_cannot_be_taken(tether, project, host_root):
    body = spec(host_root, "python3 s.py").replace("stall_after_s: 30", "stall_after_s: 2").replace(
        "restart: {max: 1,", "restart: {max: 0,")
    job = launched_id(tether("launch", project(body, {"s.py": STOPS_ITSELF})))
    st = wait_state(tether, job, "FAILED", timeout=60)
    assert st["failure"] == "stall"
    r = tether("logs", job, "--file", "stacks")
    assert r.exit_code == 0
    assert "stopped (by SIGSTOP or a debugger)" in r.stdout and "cannot be taken" in r.stdout


def test_ssh_runs_one_argument_as_a_command_line(tether, project, host_root):
    job = launched_id(tether("launch", project(spec(host_root, "sleep 20"))))
    wait_state(tether, job, "RUNNING")
    r = tether("ssh", job, "--", "echo one > ssh.txt; echo two >> ssh.txt")
    assert r.exit_code == 0, r
    assert (host_root / "jobs" / job / "ssh.txt").read_text() == "one\ntwo\n"
    tether("stop", job)


def test_an_unreachable_host_shows_what_was_last_known(tether, project, own_sshd, tmp_path, monkeypatch):
    conf = tmp_path / "own_config"
    conf.write_text(own_sshd.ssh_config("ownhost"))
    monkeypatch.setenv("TETHER_SSH_CONFIG", str(conf))
    body = spec(tmp_path / "own-root", "python3 train.py 400 0.05", f"progress: {{pattern: '{PATTERN}'}}").replace(
        "address: testhost", "address: ownhost, retry_s: 0, connect_timeout_s: 2")
    job = launched_id(tether("launch", project(body, {"train.py": NANO, "data/train.bin": b"x"})))
    wait_for(lambda: (status_json(tether, job)["step"] or 0) >= 5, 60, what="some steps")
    own_sshd.stop()
    own_sshd.kill_sessions()  # the host is gone, the connection tether shares with it too
    r = tether("status", job)
    assert r.exit_code == ExitCode.UNREACHABLE
    assert "last seen" in r.stdout and "RUNNING at step" in r.stdout and "ago" in r.stdout


# -- Hugging Face Trainer scripts and their checkpoints -----------------------------------------

IGNORES_ITS_RESUME_POINT = """
import os, time
from tether import progress
for step in range(40):                      # always from 0: it never reads TETHER_RESUME_FROM
    progress.report(step, loss=1.0)
    if step % 5 == 4:
        d = os.path.join(progress.checkpoint_dir(), "step-%d" % step)
        os.makedirs(d, exist_ok=True)
        open(os.path.join(d, "w.bin"), "wb").write(os.urandom(64))
        progress.report(step, checkpoint="step-%d" % step)
    if step == 22 and progress.attempt() == 0:
        os.kill(os.getpid(), 9)
    time.sleep(0.1)
"""


def test_a_restart_that_ignores_its_checkpoint_is_said_at_once(tether, project, host_root):
    body = spec(host_root, "python3 t.py").replace("every_min: 0.02, keep: 3", "every_min: 600, keep: 1")
    job = launched_id(tether("launch", project(body, {"t.py": IGNORES_ITS_RESUME_POINT})))
    wait_for(lambda: events(host_root, job, "resumed-below-checkpoint"), 60, what="the regression event")
    ev = events(host_root, job, "resumed-below-checkpoint")[0]
    assert ev["first_step"] == 0 and ev["given_step"] == 19  # the newest live checkpoint before the kill
    st = status_json(tether, job)
    assert any("below step 19" in w and "TETHER_RESUME_FROM" in w for w in st["warnings"]), st["warnings"]


SAVES_EVERY_FEW_HUNDRED_MS = """
import os, shutil, time
root = os.environ["TETHER_CHECKPOINT_DIR"]
for step in range(1, 200):                  # like a Trainer with save_steps=1: never quiet
    d = os.path.join(root, "checkpoint-%d" % step)
    os.makedirs(d)
    open(os.path.join(d, "model.bin"), "wb").write(os.urandom(1024))
    old = os.path.join(root, "checkpoint-%d" % (step - 12))
    shutil.rmtree(old, ignore_errors=True)
    time.sleep(0.3)
"""


def test_a_folder_that_never_stays_quiet_still_gets_backed_up(tether, project, host_root):
    body = spec(host_root, "python3 s.py").replace("every_min: 0.02", "every_min: 0.05")
    job = launched_id(tether("launch", project(body, {"s.py": SAVES_EVERY_FEW_HUNDRED_MS})))
    done = wait_for(lambda: events(host_root, job, "backup-done"), 60, what="a backup of a busy folder")
    assert done[0]["name"].split("-step")[1].isdigit()  # the newest complete checkpoint-N, by its step
    tether("stop", job)
    listing = json.loads(tether("backups", job, "--json").stdout)
    assert listing and all(b["verified"] for b in listing) and listing[0]["source"].startswith("checkpoint-")


AGENT_PY = "raise SystemExit('this is the project\\'s own agent.py: tether must never run it')\n"


def test_a_project_with_its_own_agent_py_works(tether, project, host_root):
    script = ("import time\nfrom tether import progress\n"
              "for s in range(10):\n    progress.report(s, loss=1.0 / (s + 1)); time.sleep(0.05)\n")
    job = launched_id(tether("launch", project(spec(host_root, "python3 s.py"),
                                               {"s.py": script, "agent.py": AGENT_PY})))
    done = wait_state(tether, job, "SUCCEEDED")
    assert done["step"] == 9
    assert tether("status", job).exit_code == 0


TRAINER = """
import os, sys
from tether import progress
from tether.hf import TetherCallback, resume_checkpoint
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainerCallback, TrainingArguments
from datasets import Dataset

tok = AutoTokenizer.from_pretrained(sys.argv[1])
model = AutoModelForCausalLM.from_pretrained(sys.argv[1])
ds = Dataset.from_dict(tok(["the quick brown fox jumps over the lazy dog"] * 64)).map(
    lambda b: {"labels": b["input_ids"]}, batched=True)

class CrashOnce(TrainerCallback):                # the host's OOM killer, once
    def on_step_end(self, args, state, control, **kw):
        if state.global_step == 10 and progress.attempt() == 0:
            os.kill(os.getpid(), 9)

args = TrainingArguments(output_dir=os.environ["TETHER_CHECKPOINT_DIR"], per_device_train_batch_size=4,
                         max_steps=16, logging_steps=1, save_steps=4, report_to=[], use_cpu=True)
print("resuming from", resume_checkpoint(), flush=True)
trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[TetherCallback(), CrashOnce()])
trainer.train(resume_from_checkpoint=resume_checkpoint())
"""


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from tiny_lm import make_model

    return make_model(tmp_path_factory.mktemp("lm") / "model")


def test_a_trainer_script_resumes_exactly_from_its_newest_checkpoint(tether, project, host_root, tiny_model):
    body = spec(host_root, f"python train.py {tiny_model}").replace(
        f"root: {host_root}}}", f"root: {host_root}, python: {sys.executable}}}").replace(
        "every_min: 0.02, keep: 3", "every_min: 600, keep: 3")
    job = launched_id(tether("launch", project(body, {"train.py": TRAINER})))
    done = wait_state(tether, job, "SUCCEEDED", timeout=240)
    assert done["attempt"] == 1 and done["step"] == 16 and done["total_steps"] == 16
    log = (host_root / "jobs" / job / "logs" / "workload.log").read_text()
    assert "resuming from None" in log  # the first attempt
    resumed_from = [line for line in log.splitlines() if line.startswith("resuming from /")]
    assert resumed_from and resumed_from[0].endswith("/checkpoint-8")  # the newest, live: not redone from 4
    steps = [json.loads(x) for x in (host_root / "jobs" / job / "progress.jsonl").read_text().splitlines()]
    resume = events(host_root, job, "resume")[-1]
    after = [r["step"] for r in steps if "loss" in r and r["time"] > resume["time"]]
    assert after and after[0] == 9, after  # exactly where checkpoint-8 left off
    assert not events(host_root, job, "resumed-below-checkpoint")
