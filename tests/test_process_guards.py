"""The guards around tether's own child processes, each against a real process: a block that
runs past its time kills its stream (and a late timer never kills a stream whose answer came),
a command's exit is not held up by a leftover that keeps its stderr open, early commands not
taken are all ended, a failed fork leaks no descriptor, communicate keeps to its timeout, and
the pull's host side never takes a terminal it opens by mistake as its own."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from launcher.transport import host, prestarted
from launcher.transport.host import KilledAfter, ProcessStream
from launcher.transport.spawned import Spawned

from conftest import cannot_run_here


def _gone(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass


def test_a_block_that_runs_past_its_time_kills_the_stream_and_says_so():
    stream = ProcessStream(["sleep", "60"])
    try:
        with KilledAfter(0.2, stream) as watch:
            assert stream.read_some() == b""  # ends when the watch kills it, not after 60 s
        assert watch.expired
        assert stream.wait() == -9
    finally:
        stream.kill()


def test_a_timer_that_fires_once_the_block_is_done_kills_nothing():
    """The race the done-guard closes: the timer thread may already be running _expire when
    the answer comes; it must then leave the stream (and the result) alone."""
    class Recorded:
        killed = 0

        def kill(self) -> None:
            self.killed += 1

    stream = Recorded()
    watch = KilledAfter(30, stream)  # type: ignore[arg-type]
    with watch:
        pass
    watch._expire()  # what the timer thread does if it fired just as the block ended
    assert stream.killed == 0 and not watch.expired


def test_a_leftover_holding_stderr_open_does_not_hold_up_the_commands_exit(monkeypatch):
    """A command that leaves a process behind (it inherited the stderr pipe) has exited: wait
    gives its status after DRAIN_S at most, with what it wrote to stderr before."""
    monkeypatch.setattr(host, "DRAIN_S", 0.5)
    stream = ProcessStream(["sh", "-c", "echo said >&2; sleep 60 >/dev/null & echo $!; exit 3"])
    out = b""
    while chunk := stream.read_some():
        out += chunk
    leftover = int(out)
    try:
        began = time.monotonic()
        assert stream.wait() == 3
        assert time.monotonic() - began < 30  # the leftover sleeps 60 s
        assert "said" in stream.stderr_text()
    finally:
        _gone(leftover)


def test_early_commands_not_taken_are_all_ended_even_past_one_that_cannot_be():
    class Stuck:
        def poll(self):
            return None

        def kill(self):
            raise PermissionError("not ours to end")

        def wait(self):
            raise AssertionError("not reached")

    real = Spawned(["sleep", "60"], dict(os.environ))
    prestarted.add(["ssh", "stuck"], Stuck())  # type: ignore[arg-type]
    prestarted.add(["ssh", "real"], real)
    try:
        prestarted.discard()
        assert real.returncode == -9
        assert prestarted.waiting() == []
    finally:
        real.kill()


def _open_fds() -> set:
    return set(os.listdir("/proc/self/fd"))


def test_a_fork_that_fails_leaves_no_descriptor_open(monkeypatch):
    def no_fork():
        raise BlockingIOError(11, "Resource temporarily unavailable")

    before = _open_fds()
    monkeypatch.setattr(os, "fork", no_fork)
    with pytest.raises(BlockingIOError):
        Spawned(["true"], dict(os.environ), stdin=True)
    assert _open_fds() - before == set()  # (another thread may close one of its own meanwhile)


def test_communicate_keeps_to_its_timeout_when_the_command_runs_on_with_its_pipes_closed():
    proc = Spawned(["sh", "-c", "exec >&- 2>&-; exec sleep 60"], dict(os.environ))  # exec: killing it ends the sleep
    try:
        began = time.monotonic()
        with pytest.raises(subprocess.TimeoutExpired):
            proc.communicate(timeout=0.5)
        assert time.monotonic() - began < 30
    finally:
        proc.kill()
        proc.wait()


def test_the_pull_host_side_refuses_a_terminal_in_the_job_folder_and_does_not_take_it(tmp_path):
    """A workload can leave a device node in its folder. Opened without O_NOCTTY by a process
    with no controlling terminal (an agent started by ssh has none), a terminal would become
    that process's own; the host side refuses it without ever owning it."""
    if os.geteuid() != 0:
        cannot_run_here("binding a terminal into a folder needs root")
    master, slave = os.openpty()
    top = tmp_path / "job"
    (top / "outputs").mkdir(parents=True)
    (top / "outputs" / "tty").touch()
    probe = (
        "import os, sys\n"
        "os.setsid()\n"  # a new session: no controlling terminal, as under sshd
        "from pathlib import Path\n"
        "from agent.pull_files import _open_inside\n"
        "try:\n"
        "    _open_inside(Path(sys.argv[1]), 'outputs/tty')\n"
        "    print('opened')\n"
        "except ValueError as exc:\n"
        "    print('refused:', exc)\n"
        "try:\n"
        "    os.close(os.open('/dev/tty', os.O_RDONLY))\n"
        "    print('owns a terminal')\n"
        "except OSError:\n"
        "    print('no terminal')\n"
    )
    # The terminal itself in the job folder (bound there in a mount namespace of the probe's
    # own, gone with it): a device node made with mknod outside /dev/pts does not open.
    script = 'mount --bind "$1" "$2" && exec "$3" -c "$4" "$5"'
    try:
        done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                               os.ttyname(slave), str(top / "outputs" / "tty"), sys.executable, probe, str(top)],
                              capture_output=True, text=True, timeout=60,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    finally:
        os.close(master)
        os.close(slave)
    assert done.stdout.split("\n")[:2] == ["refused: not a regular file", "no terminal"], done.stdout + done.stderr
