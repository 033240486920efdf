"""The status keeper (launcher/transport/keeper.py): after one `tether status JOB` over OpenSSH,
the next is answered through a kept `agent serve` channel with no ssh started, says what the
host says now, forwards nothing but status reads, and ends when idle or when its channel
closes, after which reads go over ssh again. Real tether processes (a keeper is started by
the command line's process, once it has printed), a real sshd."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from conftest import launched_id, wait_for, wait_state

REPO = Path(__file__).resolve().parent.parent
SLEEPS = "python3 -c 'import time; time.sleep(600)'"


def tether_process(*args: str, env=None) -> subprocess.CompletedProcess:
    """`tether ARGS` as the installed command runs it (keepers start only there)."""
    return subprocess.run([sys.executable, "-c", "from launcher.entry import main; main()", *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {}), "PYTHONPATH": str(REPO)})


def keeper_sockets() -> list:
    from launcher.transport.keeper import alive
    from launcher.transport.openssh import control_dir

    return [p for p in control_dir(Path(os.environ["TETHER_HOME"])).glob("k-*") if alive(str(p))]


def ssh_logged(tmp_path: Path) -> "tuple[dict, Path]":
    """PATH with an `ssh` first that notes each call that may reach a host, then runs the real
    one (`ssh -Q cipher`, which tether asks once per ssh binary, reaches none)."""
    folder, log = tmp_path / "logged-bin", tmp_path / "ssh-calls"
    folder.mkdir(exist_ok=True)
    wrapper = folder / "ssh"
    wrapper.write_text(f"#!/bin/sh\n[ \"$1\" = -Q ] || echo \"$*\" >> {log}\nexec /usr/bin/ssh \"$@\"\n")
    wrapper.chmod(0o755)
    return {"PATH": f"{folder}:{os.environ['PATH']}"}, log


def ask_raw(path: Path, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(str(path))
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def test_the_next_status_read_goes_through_the_keeper_without_ssh(tether, project, tmp_path):
    root = tmp_path / "root"
    job = launched_id(tether("launch", project(f"""
        name: kept
        host: {{provider: ssh, address: testhost, root: {root}}}
        run: {SLEEPS}
        heartbeat: {{every_s: 0.5}}
    """)))
    wait_state(tether, job, "RUNNING")
    first = tether_process("status", job)
    assert first.returncode == 0 and "RUNNING" in first.stdout, first
    (sock,) = wait_for(keeper_sockets, 60, what="a keeper listening")
    assert oct(sock.stat().st_mode & 0o777) == "0o600" and oct(sock.parent.stat().st_mode & 0o777) == "0o700"

    env, calls = ssh_logged(tmp_path)
    kept = tether_process("status", job, env=env)
    assert kept.returncode == 0 and "RUNNING" in kept.stdout and "kept" in kept.stdout, kept
    assert not calls.exists(), calls.read_text()  # answered with no ssh started

    # Nothing but a status read goes through it: a request is a status read or refused.
    job_dir = str(root / "jobs" / job).encode()
    for bad in (b'{"dirs": "/x", "recent": 0}\n', b'{"dirs": ["relative/jobs/x"], "recent": 0}\n',
                b'{"dirs": ["/x"], "recent": 99999}\n', b"not json\n", b'{"dirs": [], "recent": 0}\n'):
        assert b'"refused"' in ask_raw(sock, bad), bad
    asked_to_stop = json.loads(ask_raw(sock, b'{"op": "stop", "dirs": ["%s"], "recent": 0}\n' % job_dir))
    assert asked_to_stop[0]["state"] == "RUNNING"  # its op is not forwarded: a status read, nothing stopped
    time.sleep(1)
    assert json.loads(tether("status", job, "--json").stdout)["state"] == "RUNNING"

    assert tether("stop", job).exit_code == 0
    wait_state(tether, job, "STOPPED")
    now = tether_process("status", job, env=env)
    assert now.returncode == 0 and "STOPPED" in now.stdout, now  # what the host says now, not a copy
    assert not calls.exists(), calls.read_text()


def test_a_keeper_ends_when_idle_or_when_its_channel_closes_and_reads_go_over_ssh_again(
        tether, project, tmp_path, monkeypatch):
    root = tmp_path / "root"
    job = launched_id(tether("launch", project(f"""
        name: idle
        host: {{provider: ssh, address: testhost, root: {root}}}
        run: {SLEEPS}
    """)))
    wait_state(tether, job, "RUNNING")

    # Its channel closes (the host's side of it ends): the keeper ends, the next read uses ssh.
    assert tether_process("status", job).returncode == 0
    (sock,) = wait_for(keeper_sockets, 60, what="a keeper listening")
    subprocess.run(["pkill", "-f", "--", f"-c import sys.* {root}/runtime/[^ ]+ serve "], check=False)  # the host's side
    wait_for(lambda: not sock.exists() or None, 30, what="the keeper to end")
    env, calls = ssh_logged(tmp_path)
    again = tether_process("status", job, env=env)
    assert again.returncode == 0 and "RUNNING" in again.stdout, again
    status_calls = [c for c in calls.read_text().splitlines() if f" status {root}/jobs/{job}" in c]
    assert len(status_calls) == 1, calls.read_text()  # over ssh again (a new keeper is started after it)

    # Idle for TETHER_SSH_PERSIST_S: it ends by itself and removes its socket.
    wait_for(keeper_sockets, 60, what="the new keeper")
    subprocess.run(["pkill", "-f", f"launcher.transport.keeper .*{os.environ['TETHER_HOME']}"], check=False)
    wait_for(lambda: not keeper_sockets() or None, 30, what="the keeper killed")
    monkeypatch.setenv("TETHER_SSH_PERSIST_S", "2")
    assert tether_process("status", job).returncode == 0
    (sock,) = wait_for(keeper_sockets, 60, what="a keeper kept for 2 s")
    started = time.monotonic()
    wait_for(lambda: not sock.exists() or None, 60, what="the idle keeper to end")
    assert time.monotonic() - started < 30
    assert tether("stop", job).exit_code == 0


def test_a_control_folder_someone_else_made_is_not_used(tmp_path):
    """/tmp is shared: a folder at the control path that is not this user's own, or that others
    may enter, could hold a spoofed keeper socket. A private folder of this command's own is
    used instead."""
    import shutil

    from conftest import cannot_run_here

    from launcher.transport.openssh import control_dir

    if os.getuid() != 0:
        cannot_run_here("making a folder another user's takes root")  # fails under CI, which is root
    home = tmp_path / "home"
    mine = control_dir(home)
    assert mine.stat().st_uid == os.getuid() and mine.stat().st_mode & 0o777 == 0o700
    assert control_dir(home) == mine  # the same one each time: connections are shared
    try:
        mine.chmod(0o777)
        instead = control_dir(home)
        assert instead != mine and instead.stat().st_mode & 0o777 == 0o700
        shutil.rmtree(instead)
        mine.chmod(0o700)
        os.chown(mine, 65534, -1)  # another user's
        instead = control_dir(home)
        assert instead != mine and instead.stat().st_uid == os.getuid()
        shutil.rmtree(instead)
    finally:
        shutil.rmtree(mine)


# The keeper process itself, against the real agent's serve run here and against stand-ins
# for what a real one cannot be made to do on cue (an older agent, a stuck or garbled one).

OLD_AGENT = """
import sys
for line in sys.stdin:  # an agent from before `dirs`: every such request fails
    print('{"ok": false, "error": "\\'jobs\\'"}', flush=True)
"""
STUCK_AFTER_HELLO = """
import sys, time
sys.stdin.readline(); print('{"ok": true, "result": []}', flush=True)
sys.stdin.readline(); time.sleep(600)
"""
TWO_ANSWERS = """
import sys
sys.stdin.readline(); print('{"ok": true, "result": []}', flush=True)
sys.stdin.readline(); print('{"ok": true, "result": [{}]}\\n{"ok": true, "result": [{}]}', flush=True)
sys.stdin.readline()
"""


def keeper_process(path: Path, serve_argv: list, idle_s: float = 300) -> subprocess.Popen:
    path.parent.mkdir(mode=0o700, exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "launcher.transport.keeper", str(path), str(idle_s),
                             json.dumps(serve_argv)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})


def real_serve(root: Path) -> list:
    from agent.protocol import agent_argv

    return agent_argv(sys.executable, str(REPO), "serve", str(root))


def test_the_keeper_answers_from_the_real_agent_and_ends_when_idle(tmp_path):
    from launcher.transport.keeper import alive, ask

    path = tmp_path / "ctl" / "k-real"
    proc = keeper_process(path, real_serve(tmp_path / "root"), idle_s=3)
    wait_for(lambda: alive(str(path)), 30, what="the keeper listening")
    answer = ask(str(path), [str(tmp_path / "root" / "jobs" / "nosuch1")], 0).answer()
    assert json.loads(answer) == [{"job_dir": str(tmp_path / "root" / "jobs" / "nosuch1"), "exists": False,
                                   "now": json.loads(answer)[0]["now"]}]
    time.sleep(1.5)
    assert alive(str(path)) and proc.poll() is None  # not idle long enough yet
    assert proc.wait(timeout=30) == 0 and not path.exists()  # then it ends, its socket removed


def test_a_keeper_is_not_kept_for_an_agent_that_cannot_answer_it(tmp_path):
    path = tmp_path / "ctl" / "k-old"
    proc = keeper_process(path, [sys.executable, "-c", OLD_AGENT])
    assert proc.wait(timeout=30) == 1 and not path.exists()  # never listened: reads go over ssh


def test_a_stuck_or_garbled_channel_costs_a_read_seconds_and_ends_the_keeper(tmp_path):
    from launcher.transport.keeper import CLIENT_WAIT_S, alive, ask

    for name, script in (("stuck", STUCK_AFTER_HELLO), ("garbled", TWO_ANSWERS)):
        path = tmp_path / "ctl" / f"k-{name}"
        proc = keeper_process(path, [sys.executable, "-c", script])
        wait_for(lambda: alive(str(path)), 30, what="the keeper listening")
        began = time.monotonic()
        assert ask(str(path), ["/r/jobs/a"], 0).answer() is None, name  # no answer: the read uses ssh
        assert time.monotonic() - began < CLIENT_WAIT_S + 5
        proc.wait(timeout=30)
        assert not path.exists(), name


def test_two_keepers_started_together_leave_one(tmp_path):
    from launcher.transport.keeper import alive

    path = tmp_path / "ctl" / "k-two"
    procs = [keeper_process(path, real_serve(tmp_path / "root")) for _ in range(3)]
    wait_for(lambda: sum(p.poll() is not None for p in procs) == 2 or None, 30, what="two to give way")
    (kept,) = [p for p in procs if p.poll() is None]
    assert alive(str(path))
    kept.terminate()
    assert kept.wait(timeout=30) == 0 and not path.exists()  # ended by a signal, it cleans up too


def test_a_socket_in_a_folder_open_to_others_is_not_asked(tmp_path):
    from launcher.transport.keeper import alive, ask

    path = tmp_path / "ctl" / "k-open"
    proc = keeper_process(path, real_serve(tmp_path / "root"))
    try:
        wait_for(lambda: alive(str(path)), 30, what="the keeper listening")
        assert ask(str(path), ["/r/jobs/a"], 0) is not None
        path.parent.chmod(0o777)
        assert ask(str(path), ["/r/jobs/a"], 0) is None
    finally:
        path.parent.chmod(0o700)
        proc.terminate()
        proc.wait(timeout=30)


def test_the_hosts_serve_ends_when_nothing_is_asked(tmp_path):
    """A laptop that slept or went offline can leave the connection open for hours: the host's
    side of a keeper does not wait on it forever."""
    proc = subprocess.Popen(real_serve(tmp_path / "root"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env={**os.environ, "TETHER_SERVE_IDLE_S": "1"})
    try:
        proc.stdin.write(b'{"op": "ping"}\n')
        proc.stdin.flush()
        assert b'"pong"' in proc.stdout.readline()
        assert proc.wait(timeout=30) == 0  # stdin still open: it ended on its own
    finally:
        proc.kill()
        proc.wait()
