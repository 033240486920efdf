"""transport/spawned.py: the commands early.py forks before subprocess is loaded behave as
the subprocess.Popen they stand for, where their takers look."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

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


def _in_a_python(code: str, shell_redirects: str = "") -> subprocess.CompletedProcess:
    """code run by a fresh Python (its findings on stderr), started as `sh -c 'exec python ... REDIRECTS'`."""
    import shlex

    repo = str(Path(__file__).resolve().parent.parent)
    argv = shlex.join([sys.executable, "-c", f"import sys; sys.path.insert(0, {repo!r})\n" + code])
    return subprocess.run(["sh", "-c", f"exec {argv} {shell_redirects}"], capture_output=True, text=True, timeout=60)


def test_a_tether_that_inherited_sigchld_ignored_still_ends_and_reads_its_commands():
    """Then the kernel reaps children itself and waitpid says ECHILD: as Popen, the status is 0."""
    done = _in_a_python("import os, signal\nsignal.signal(signal.SIGCHLD, signal.SIG_IGN)\n"
                        "from launcher.transport.spawned import Spawned\n"
                        "p = Spawned(['sh', '-c', 'echo hi'], dict(os.environ))\n"
                        "print(p.communicate(timeout=30), p.poll(), p.wait(), file=sys.stderr)")
    assert done.returncode == 0 and done.stderr.strip() == "(b'hi\\n', b'') 0 0", done.stderr


def test_a_tether_started_with_its_standard_descriptors_closed_still_gets_the_answer():
    """The pipes then take numbers 0 and 1 themselves (cron, a daemon)."""
    done = _in_a_python("import os\nfrom launcher.transport.spawned import Spawned\n"
                        "p = Spawned(['sh', '-c', 'cat; echo out'], dict(os.environ), stdin=True)\n"
                        "print(p.communicate(b'in ', timeout=30), p.returncode, file=sys.stderr)", "<&- >&-")
    assert done.stderr.strip() == "(b'in out\\n', b'') 0", done.stderr
