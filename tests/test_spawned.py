"""transport/spawned.py: the commands early.py forks before subprocess is loaded behave as
the subprocess.Popen they stand for, where their takers look."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from launcher.transport.spawned import EXEC_FAILED, Spawned


def test_its_pipes_exit_status_and_answer_are_a_popens():
    p = Spawned(["sh", "-c", "cat; echo said >&2; exit 3"], dict(os.environ), stdin=True)
    assert p.communicate(b"asked", timeout=30) == (b"asked", b"said\n") and p.returncode == 3 == p.poll()


def test_a_command_that_cannot_run_says_so_in_one_line():
    p = Spawned(["/nonexistent/ssh", "-V"], dict(os.environ))
    out, err = p.communicate(timeout=30)
    assert p.returncode == EXEC_FAILED and out == b"" and err.decode().startswith("tether: cannot run /nonexistent/ssh")


def test_an_answer_late_past_its_timeout_raises_as_popens_does_and_kill_ends_it():
    p = Spawned([sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ))
    with pytest.raises(subprocess.TimeoutExpired):
        p.communicate(timeout=0.3)
    with pytest.raises(subprocess.TimeoutExpired):
        p.wait(timeout=0.1)
    p.kill()
    assert p.wait() == -signal.SIGKILL


def test_the_child_gets_only_its_three_descriptors_and_default_signals(tmp_path):
    """As Popen's close_fds and restore_signals: an ssh that stays (ControlPersist) must not
    hold a descriptor of the program that ran tether, nor ignore SIGPIPE as Python does."""
    held = os.open(tmp_path / "held", os.O_CREAT | os.O_WRONLY)
    leaked = os.dup2(held, 50)   # inheritable, as a descriptor tether's own parent left open
    try:
        p = Spawned(["sh", "-c", "ls /proc/$$/fd; grep SigIgn /proc/$$/status"], dict(os.environ))
        out, _ = p.communicate(timeout=30)
    finally:
        os.close(held)
        os.close(leaked)
    *fds, ignored = out.decode().split()[:-1] + [out.decode().split()[-1]]
    assert "0" in fds and "1" in fds and "2" in fds and str(leaked) not in fds, fds
    assert not int(ignored, 16) & (1 << (signal.SIGPIPE - 1)), ignored   # SIGPIPE not ignored
