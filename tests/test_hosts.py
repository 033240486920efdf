"""Host keys, unreachable hosts, aliases, and a host without the Python we need."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from conftest import kill_all_under, launched_id, status_json, wait_for, wait_state

from launcher.errors import ExitCode


def spec_for(root, address="testhost", host_extra=""):
    return f"""
        name: hk
        host: {{provider: ssh, address: "{address}", root: {root}, connect_timeout_s: 2, retry_s: 2{host_extra}}}
        run: echo hello
    """


def test_changed_host_key_is_refused(tether, project, tmp_path, own_sshd):
    root = tmp_path / "root"
    spec = project(spec_for(root, own_sshd.address, f", identity_file: {own_sshd.client_key}"))
    first = tether("launch", spec)
    assert first.exit_code == 0, first
    known = (tmp_path / "tether-home" / "known_hosts").read_text()
    assert f"[127.0.0.1]:{own_sshd.port} ssh-ed25519" in known

    own_sshd.restart(new_host_key=True)
    own_sshd.kill_sessions()  # a rebuilt host: the connection tether shares dies with the old one
    r = tether("launch", spec)
    assert r.exit_code == ExitCode.AUTH, r
    assert "host key" in r.stderr and "known_hosts" in r.stderr and "ssh-keygen -R" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert (tmp_path / "tether-home" / "known_hosts").read_text() == known  # not replaced


def test_unreachable_port_is_a_clear_error_within_the_timeout(tether, project, tmp_path):
    from sshd import free_port

    spec = project(spec_for(tmp_path / "root", f"root@127.0.0.1:{free_port()}"))
    started = time.monotonic()
    r = tether("launch", spec)
    took = time.monotonic() - started
    assert r.exit_code == ExitCode.UNREACHABLE, r
    assert r.stderr.startswith("error: cannot reach 127.0.0.1 port ") and "retried for 2s" in r.stderr
    assert "connection refused" in r.stderr and "Errno None" not in r.stderr
    assert took < 15
    assert "Traceback" not in r.stderr


def test_wrong_key_is_an_auth_error(tether, project, tmp_path, sshd_server):
    from sshd import keygen

    stranger = tmp_path / "stranger"
    keygen(stranger)
    spec = project(spec_for(tmp_path / "root", sshd_server.address, f", identity_file: {stranger}"))
    r = tether("launch", spec)
    assert r.exit_code == ExitCode.AUTH, r
    assert "authentication to root@127.0.0.1" in r.stderr


def test_ssh_config_alias_and_host_flag(tether, project, tmp_path):
    spec = project("""
        name: alias
        run: echo via-alias
    """)
    r = tether("launch", spec, "--host", "testhost")
    assert r.exit_code == 0, r
    job = launched_id(r)
    st = wait_state(tether, job, "SUCCEEDED")
    assert st["provider"] == "ssh" and st["host"].startswith("root@127.0.0.1:")
    assert tether("logs", job).stdout.strip() == "via-alias"


def test_host_without_that_python(tether, project, tmp_path):
    spec = project(spec_for(tmp_path / "root", host_extra=", python: python2.6"))
    r = tether("launch", spec)
    assert r.exit_code == ExitCode.FAILED, r
    assert "no 'python2.6' on" in r.stderr and "Python 3.9+" in r.stderr


def test_several_owned_hosts_the_first_that_answers_is_used(tether, project, tmp_path, sshd_server):
    from sshd import free_port

    dead = f"root@127.0.0.1:{free_port()}"
    spec = project(f"""
        name: many
        host: {{provider: ssh, address: ["{dead}", testhost], root: {tmp_path / 'root'}, connect_timeout_s: 1}}
        run: echo picked
    """)
    r = tether("launch", spec)
    assert r.exit_code == 0, r
    job = launched_id(r)
    assert wait_state(tether, job, "SUCCEEDED")["host"] == f"root@127.0.0.1:{sshd_server.port}"


def test_a_changed_key_is_refused_on_the_shared_connection_path_too(tether, project, tmp_path, own_sshd):
    """Every command after the first reuses one connection per host; when it has to open a
    new one, the key is checked exactly as the first time."""
    spec = project(spec_for(tmp_path / "root", own_sshd.address, f", identity_file: {own_sshd.client_key}")
                   .replace("run: echo hello", "run: sleep 30"))
    job = launched_id(tether("launch", spec))
    assert tether("status", job).exit_code == 0  # over the shared connection
    own_sshd.restart(new_host_key=True)
    own_sshd.kill_sessions()
    r = tether("status", job, "--json")
    assert r.exit_code == ExitCode.UNREACHABLE, r
    reason = json.loads(r.stdout)["reason"]
    assert "host key" in reason and "has changed" in reason and "ssh-keygen -R" in reason
    r = tether("launch", spec)
    assert r.exit_code == ExitCode.AUTH and "host key" in r.stderr, r
    r = tether("pull", job, "--to", tmp_path / "got")   # its session fails as the connection: said as such
    assert r.exit_code == ExitCode.AUTH and "host key" in r.stderr and "ssh-keygen -R" in r.stderr, r
    assert len(r.stderr.strip().splitlines()) == 1 and not list((tmp_path / "got").rglob("*.bin"))


def test_status_asks_hosts_at_once_and_a_dead_one_costs_its_timeout_once(tether, project, tmp_path):
    """Two jobs on hosts that hang (TCP accepted, no SSH ever) beside a live one: every host is
    asked at once, so the table takes one connect timeout, not one per dead host, and each
    dead job is a line, not a traceback."""
    import dataclasses
    import os
    import socket

    from conftest import wait_state

    from launcher.registry import Registry
    from launcher.settings import places

    job = launched_id(tether("launch", project(spec_for(tmp_path / "root").replace("echo hello", "sleep 20"))))
    wait_state(tether, job, "RUNNING")
    silent = [socket.socket() for _ in range(2)]
    registry = Registry(places(os.environ).registry)
    try:
        rec = registry.resolve(job)
        for i, s in enumerate(silent):
            s.bind(("127.0.0.1", 0))
            s.listen(8)  # accepts TCP, never says a word of SSH: a frozen host
            registry.add(dataclasses.replace(rec, id=f"dead{i}", created=rec.created + 1 + i, endpoint={
                "kind": "ssh", "host": "127.0.0.1", "port": s.getsockname()[1], "user": "root",
                "connect_timeout_s": 5, "retry_s": 60}))
        began = time.monotonic()
        r = tether("jobs", "--json")
        took = time.monotonic() - began
    finally:
        registry.close()
        for s in silent:
            s.close()
    assert r.exit_code == 0, r
    states = {j["id"]: j for j in json.loads(r.stdout)}
    assert states[job]["state"] == "RUNNING"
    for i in range(2):
        assert states[f"dead{i}"]["state"] == "UNREACHABLE" and "cannot reach 127.0.0.1" in states[f"dead{i}"]["reason"]
    assert took < 9, took  # one timeout (5 s) for both, not one each (10 s), and no retries
    tether("stop", job)


def test_a_host_behind_a_bastion_is_reached_through_proxyjump(tether, project, tmp_path, own_sshd, sshd_server):
    """~/.ssh/config says the host is reached through a jump host: launch, status and pull go
    through it (OpenSSH -J from the config), and with the bastion down the host is unreachable,
    in one line. The bastion's own key is the user's config's business, as with OpenSSH."""
    from launcher.transport.openssh import close_shared, control_dir
    from scripts import COUNTER

    bastion = own_sshd
    conf = Path(os.environ["TETHER_SSH_CONFIG"])
    conf.write_text(conf.read_text()
                    + bastion.ssh_config("bastion")
                    + f"  UserKnownHostsFile {tmp_path / 'bastion_known_hosts'}\n  StrictHostKeyChecking accept-new\n"
                    + sshd_server.ssh_config("inside").replace("Host inside\n", "Host inside\n  ProxyJump bastion\n"))
    spec = project(f"""
        name: jumped
        host: {{provider: ssh, address: inside, root: {tmp_path / "root"}}}
        run: python3 train.py 5 0.01
        heartbeat: {{every_s: 0.5}}
    """, {"train.py": COUNTER})
    job = launched_id(tether("launch", spec))
    # Read through the jump: the agent's own answer, whichever step of its short run it is at.
    assert status_json(tether, job)["state"] in ("PENDING", "SETUP", "RUNNING", "BACKING_UP", "SUCCEEDED")
    wait_for(lambda: status_json(tether, job)["state"] == "SUCCEEDED" or None, 60, what="SUCCEEDED")
    assert tether("pull", job, "--to", tmp_path / "out").exit_code == 0
    assert (tmp_path / "bastion_known_hosts").read_text().strip()  # the bastion was on the way

    bastion.stop()
    bastion.kill_sessions()
    close_shared(control_dir(Path(os.environ["TETHER_HOME"])))
    r = tether("status", job, "--json")
    assert r.exit_code == int(ExitCode.UNREACHABLE), r
    assert json.loads(r.stdout)["state"] == "UNREACHABLE"
    assert "Traceback" not in r.stdout + r.stderr


def test_ssh_and_rsync_never_carry_the_laptops_secrets():
    """The environment ssh, rsync and local agent commands get: a shared connection lives on
    in its own process, and ~/.ssh/config's SendEnv would pass variables to the host."""
    from launcher.transport.host import child_environ

    laptop = {"PATH": "/usr/bin", "HOME": "/home/me", "SSH_AUTH_SOCK": "/tmp/agent.sock", "LANG": "C.UTF-8",
              "HF_TOKEN": "hf_x", "KAGGLE_KEY": "k", "NOVITA_API_KEY": "n", "AWS_SECRET_ACCESS_KEY": "a",
              "VAST_API_KEY": "v", "WANDB_API_KEY": "w", "GITHUB_TOKEN": "g", "DB_PASSWORD": "p"}
    assert child_environ(laptop) == {"PATH": "/usr/bin", "HOME": "/home/me", "SSH_AUTH_SOCK": "/tmp/agent.sock",
                                     "LANG": "C.UTF-8"}


def test_the_tether_command_reads_status_with_its_ssh_started_before_the_cli_loads(tether, project, tmp_path):
    """`tether status JOB` and `tether jobs` as the installed command runs them: their SSH
    command starts before typer and rich load (launcher/early.py) and its answer is the one
    shown; nothing of it is left running after, also when what was started is not used."""
    import subprocess
    import sys

    from scripts import COUNTER

    job = launched_id(tether("launch", project(f"""
        name: early
        host: {{provider: ssh, address: testhost, root: {tmp_path / "root"}}}
        run: python3 train.py 3 0.01
    """, {"train.py": COUNTER})))
    wait_state(tether, job, "SUCCEEDED")

    def command(*args):
        return subprocess.run([sys.executable, "-m", "launcher", *args], capture_output=True, text=True,
                              env=dict(os.environ), timeout=120)

    shown = command("status", job)
    assert shown.returncode == 0, shown
    assert "SUCCEEDED" in shown.stdout and re.search(r"^step\s+2\b", shown.stdout, re.M), shown.stdout
    listed = command("jobs", "--json")
    assert [j["state"] for j in json.loads(listed.stdout) if j["id"] == job] == ["SUCCEEDED"]
    # The status keeper that read left (tests/test_keeper.py) would answer the next read: ended
    # here, so the next ones start their ssh early, which is what this test is about.
    kill_all_under(Path(os.environ["TETHER_HOME"]))

    from launcher import early
    from launcher.transport import prestarted

    early.start(["status", job])
    started = prestarted.waiting()
    assert len(started) == 1
    r = tether("status", job)  # the status path takes the command started for it, exactly
    assert r.exit_code == 0 and "SUCCEEDED" in r.stdout and not prestarted.waiting() and started[0].returncode == 0
    early.start(["status", job])
    started = prestarted.waiting()
    prestarted.discard()  # what tether does at exit with a command it did not use
    assert started[0].poll() is not None and not prestarted.waiting()


def _finished_job(tether, project, tmp_path, name: str) -> "tuple[str, str]":
    """A short job on testhost, run to its end; and where early.py remembers command lines."""
    from scripts import COUNTER

    job = launched_id(tether("launch", project(f"""
        name: {name}
        host: {{provider: ssh, address: testhost, root: {tmp_path / "root"}}}
        run: python3 train.py 2 0.01
    """, {"train.py": COUNTER})))
    wait_state(tether, job, "SUCCEEDED")
    return job, str(Path(os.environ["TETHER_HOME"]) / "cache" / "early-commands.bin")


def test_a_status_read_starts_its_remembered_ssh_command_first_and_a_stale_one_is_ended_unused(
        tether, project, tmp_path):
    """The second same read starts the command line the first one built, before the registry
    is opened; a remembered line that no longer matches (the job moved, a setting changed) is
    ended unused, the right one is run and remembered instead; a remembered line that is not
    an ssh command is never run."""
    from launcher import early
    from launcher.transport import prestarted

    job, cache = _finished_job(tether, project, tmp_path, "remembered")

    early.start(["status", job])        # builds the command, starts it, remembers it
    built = prestarted.waiting()
    assert len(built) == 1
    prestarted.discard()
    remembered = early.read_remembered(cache)
    (line,) = [v for k, v in remembered.items() if k[0] == ("status", job) and len(k) == 2]
    assert line == [list(built[0].args)]

    import launcher.registry as registry_module

    opened = []
    original = registry_module.Registry

    class Watched(original):  # type: ignore[misc, valid-type]
        def __init__(self, *a, **k):
            opened.append(len(prestarted.waiting()))  # how many were running when the registry opened
            super().__init__(*a, **k)

    registry_module.Registry = Watched
    try:
        early.start(["status", job])
    finally:
        registry_module.Registry = original
    assert opened == [1]  # the remembered command was running before the registry opened
    r = tether("status", job)
    assert r.exit_code == 0 and "SUCCEEDED" in r.stdout and not prestarted.waiting()

    key = next(k for k in remembered if k[0] == ("status", job) and len(k) == 2)
    stale = built[0].args[:-1] + ["echo stale"]
    marker = tmp_path / "never"
    early.write_remembered(cache, {key: [stale, ["touch", str(marker)]]})
    early.start(["status", job])
    running = prestarted.waiting()
    assert len(running) == 2 and not marker.exists()   # the stale ssh and the right one; no `touch`
    r = tether("status", job)
    assert r.exit_code == 0 and "SUCCEEDED" in r.stdout
    prestarted.discard()                                # tether's exit: the stale one is ended
    assert all(p.poll() is not None for p in running) and not marker.exists()
    assert early.read_remembered(cache)[key] == [list(built[0].args)]

    assert tether("forget", job).exit_code == 0
    early.start(["status", job])        # no such job now: what it started ends, nothing is kept
    assert not prestarted.waiting() and early.read_remembered(cache)[key] == []


def test_a_launch_begins_its_remembered_host_session_first_and_ends_a_stale_one(tether, project, tmp_path):
    """The second same `tether launch SPEC` starts the host session the first one opened
    before tether loads, and the launch talks to it; a remembered session for another project
    (the spec changed) is ended unused, taking no lock, and the right one is remembered."""
    import fcntl

    from scripts import COUNTER

    from launcher import early
    from launcher.transport import prestarted

    root = tmp_path / "root"
    spec = project(f"""
        name: headstart
        host: {{provider: ssh, address: testhost, root: {root}}}
        run: python3 train.py 2 0.01
    """, {"train.py": COUNTER})
    cache = str(Path(os.environ["TETHER_HOME"]) / "cache" / "early-commands.bin")

    early.start(["launch", str(spec)])              # nothing remembered: nothing started
    assert not prestarted.waiting()
    first = launched_id(tether("launch", spec))
    (line,) = [v for k, v in early.read_remembered(cache).items() if k[0] == ("launch", str(spec)) and len(k) == 3]
    assert len(line) == 1 and line[0][0] == "ssh" and line[0][-1].endswith(f"launch {root} headstart")

    early.start(["launch", str(spec)])
    (session,) = prestarted.waiting()
    assert session.stdin is not None
    second = launched_id(tether("launch", spec))
    assert not prestarted.waiting() and session.wait(timeout=60) == 0  # taken and talked to, not killed
    for job in (first, second):
        wait_state(tether, job, "SUCCEEDED")

    key = next(k for k in early.read_remembered(cache) if k[0] == ("launch", str(spec)))
    stale = line[0][:-1] + [line[0][-1].replace(" headstart", " elsewhere")]
    early.write_remembered(cache, {key: [stale]})
    early.start(["launch", str(spec)])
    (stale_session,) = prestarted.waiting()
    third = launched_id(tether("launch", spec))
    assert stale_session.wait(timeout=30) != 0 and not prestarted.waiting()   # ended, unused
    with open(root / "code" / ".elsewhere.lock", "a+") as lock:  # the stale one never locked
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert early.read_remembered(cache)[key] == line
    wait_state(tether, third, "SUCCEEDED")


def test_a_pull_begins_its_remembered_session_first_and_ends_a_stale_one(tether, project, tmp_path):
    """The second same `tether pull JOB` (into another folder) starts the host's pull session
    (it lists, then sends) before tether loads; the pull takes it (it ends as a finished command
    does, not killed) and brings the files whole. A remembered session that went stale (of
    another job folder) is ended unused, and the right one remembered."""
    from launcher import early
    from launcher.transport import prestarted

    job, cache = _finished_job(tether, project, tmp_path, "pullahead")
    on_host = (tmp_path / "root" / "jobs" / job / "outputs" / "result.json").read_bytes()

    early.start(["pull", job, "--to", str(tmp_path / "first")])   # nothing remembered: nothing started
    assert not prestarted.waiting()
    assert tether("pull", job, "--to", tmp_path / "first").exit_code == 0
    (key,) = [k for k in early.read_remembered(cache) if k[0][0] == "pull"]
    assert key[0] == ("pull", job)      # where the files land is not part of what is asked
    lines = early.read_remembered(cache)[key]
    assert [line[-1].split()[-2:] for line in lines] == [["pull-files", f"{tmp_path}/root/jobs/{job}"]]

    early.start(["pull", job, f"--to={tmp_path / 'second'}"])
    started = prestarted.waiting()
    assert len(started) == 1 and all(p.stdin is not None for p in started)
    assert tether("pull", job, f"--to={tmp_path / 'second'}").exit_code == 0
    assert not prestarted.waiting() and [p.wait(timeout=60) for p in started] == [0]  # taken, not killed
    assert (tmp_path / "second" / "outputs" / "result.json").read_bytes() == on_host

    stale = lines[0][:-1] + [lines[0][-1].replace(f"/jobs/{job}", "/jobs/elsewhere")]
    early.write_remembered(cache, {key: [stale]})
    early.start(["pull", job, "--to", str(tmp_path / "third")])
    (stale_session,) = prestarted.waiting()
    assert tether("pull", job, "--to", tmp_path / "third").exit_code == 0
    assert prestarted.waiting() == [stale_session]   # not taken: the pull asked for its own
    prestarted.discard()                # tether's exit: what was not taken is ended
    assert stale_session.poll() is not None and early.read_remembered(cache)[key] == lines
    assert (tmp_path / "third" / "outputs" / "result.json").read_bytes() == on_host

    # The job forgotten: the pull is refused in one line, and the next same pull starts nothing
    # (the host may be gone and its address someone else's).
    assert tether("forget", job).exit_code == 0
    early.start(["pull", job])
    assert len(prestarted.waiting()) == 1
    refused = tether("pull", job)
    assert refused.exit_code != 0 and "no job" in refused.stderr
    prestarted.discard()
    assert early.read_remembered(cache)[key] == []
    early.start(["pull", job])
    assert not prestarted.waiting()


def test_an_ended_job_is_not_asked_again_by_the_job_list(tether, project, tmp_path, own_sshd):
    """`tether jobs` keeps an ended job's last answer and shows it from then on, its host not
    asked (here: gone); `tether status JOB` still asks; a resumed job is asked again."""
    from scripts import COUNTER

    conf = Path(os.environ["TETHER_SSH_CONFIG"])
    conf.write_text(conf.read_text() + own_sshd.ssh_config("soon-gone"))
    ended = launched_id(tether("launch", project(f"""
        name: ended
        host: {{provider: ssh, address: soon-gone, root: {tmp_path / "root2"}}}
        run: python3 train.py 3 0.01
    """, {"train.py": COUNTER}, name="p1")))
    running = launched_id(tether("launch", project(f"""
        name: running
        host: {{provider: ssh, address: testhost, root: {tmp_path / "root1"}}}
        run: sleep 60
    """, name="p2")))
    wait_state(tether, ended, "SUCCEEDED")
    first = {j["id"]: j for j in json.loads(tether("jobs", "--json").stdout)}
    assert first[ended]["state"] == "SUCCEEDED"  # read from its host, and kept
    own_sshd.stop()
    own_sshd.kill_sessions()
    from launcher.transport.openssh import close_shared, control_dir
    close_shared(control_dir(Path(os.environ["TETHER_HOME"])))
    started = time.monotonic()
    again = {j["id"]: j for j in json.loads(tether("jobs", "--json").stdout)}
    assert again[ended]["state"] == "SUCCEEDED" and again[running]["state"] == "RUNNING"
    assert again[ended]["heartbeat_age_s"] >= first[ended]["heartbeat_age_s"]
    assert time.monotonic() - started < 10  # the gone host was not waited for
    r = tether("status", ended, "--json")  # asked: its host is gone
    assert json.loads(r.stdout)["state"] == "UNREACHABLE"
    tether("stop", running)
