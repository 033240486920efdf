"""A command started with pipes before subprocess is loaded (launcher/early.py: a status read's
ssh, a launch's or a pull's host session). Importing subprocess costs a status read 20 ms
before its ssh could start (it loads locale, re, enum, selectors and threading), and the ssh
handshake is the wait users see; a fork and an exec need only os. What takes the command later
(OpenSshHost.run and .stream, prestarted.discard) uses it as the subprocess.Popen it stands
for: args, pid, stdin, stdout, stderr, returncode, poll, wait, kill, communicate."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing is not loaded before a status read's ssh starts
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Sequence, Tuple

EXEC_FAILED = 127   # as a shell says it: the command could not be run


class Spawned:
    """Only while tether has no thread but its main one (early.py runs before any starts):
    the child runs Python between fork and exec."""

    def __init__(self, argv: Sequence[str], env: Dict[str, str], stdin: bool = False) -> None:
        """stdin: a pipe to write to, else the child shares tether's own (as Popen's None)."""
        self.args: List[str] = list(argv)
        self.returncode: Optional[int] = None
        opened: List[int] = []
        try:
            child_in, ours_in = _pipe(opened) if stdin else (-1, -1)
            ours_out, child_out = _pipe(opened)
            ours_err, child_err = _pipe(opened)
            self.pid = os.fork()
        except BaseException:
            for fd in opened:
                os.close(fd)
            raise
        if self.pid == 0:  # the child: its three ends on 0, 1 and 2, every other descriptor closed
            _exec(self.args, env, child_in, child_out, child_err)
        for fd in (child_in, child_out, child_err):
            if fd >= 0:
                os.close(fd)
        self.stdin = os.fdopen(ours_in, "wb") if stdin else None
        self.stdout = os.fdopen(ours_out, "rb")
        self.stderr = os.fdopen(ours_err, "rb")

    def poll(self) -> Optional[int]:
        if self.returncode is None:
            self._reap(os.WNOHANG)
        return self.returncode

    def _reap(self, flags: int) -> None:
        try:
            pid, status = os.waitpid(self.pid, flags)
        except ChildProcessError:  # SIGCHLD ignored (inherited): reaped already, status lost (as Popen: 0)
            self.returncode = 0
            return
        if pid:
            self.returncode = _code(status)

    def wait(self, timeout: Optional[float] = None) -> int:
        if self.returncode is not None:
            return self.returncode
        if timeout is None:
            self._reap(0)
            return self.returncode  # type: ignore[return-value]
        import time

        deadline, delay = time.monotonic() + timeout, 0.0005
        while self.poll() is None:
            if time.monotonic() >= deadline:
                import subprocess

                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        return self.returncode  # type: ignore[return-value]

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, 9)
            except ProcessLookupError:
                pass

    def communicate(self, input: Optional[bytes] = None, timeout: Optional[float] = None) -> Tuple[bytes, bytes]:
        """Its whole stdout and stderr, input written to its stdin first (on a thread: a
        command may answer before it has read everything)."""
        import subprocess
        import threading

        got: Dict[str, bytes] = {}

        def read(name: str, f) -> None:
            got[name] = f.read()

        def write() -> None:
            try:
                if input:
                    self.stdin.write(input)  # type: ignore[union-attr]
                self.stdin.close()  # type: ignore[union-attr]
            except BrokenPipeError:
                try:
                    self.stdin.close()  # type: ignore[union-attr]
                except OSError:
                    pass

        threads = [threading.Thread(target=read, args=("out", self.stdout), daemon=True),
                   threading.Thread(target=read, args=("err", self.stderr), daemon=True)]
        if self.stdin is not None:
            threads.append(threading.Thread(target=write, daemon=True))
        for t in threads:
            t.start()
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        for t in threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout)  # type: ignore[arg-type]
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        self.stdout.close()
        self.stderr.close()
        return got.get("out", b""), got.get("err", b"")


def _exec(argv: List[str], env: Dict[str, str], child_in: int, child_out: int, child_err: int) -> None:
    """In the forked child: never returns (an exec that fails says so on stderr, exit 127)."""
    try:
        import _signal  # built in (signal itself loads enum)

        for name in ("SIGPIPE", "SIGXFSZ"):  # Python ignores these; an exec would keep that (Popen restores them)
            if hasattr(_signal, name):
                _signal.signal(getattr(_signal, name), _signal.SIG_DFL)
        for fd, target in ((child_in, 0), (child_out, 1), (child_err, 2)):
            if fd == target:  # tether started with that descriptor closed: the pipe took its number
                os.set_inheritable(fd, True)
            elif fd >= 0:
                os.dup2(fd, target)
        os.closerange(3, _max_fd())
        os.execvpe(argv[0], argv, env)
    except BaseException as exc:  # noqa: BLE001 (the child must end here, whatever happened)
        try:
            os.write(2, f"tether: cannot run {argv[0]}: {exc}\n".encode(errors="replace"))
        finally:
            os._exit(EXEC_FAILED)


def _pipe(opened: List[int]) -> Tuple[int, int]:
    r, w = os.pipe()
    opened += [r, w]
    return r, w


def _max_fd() -> int:
    try:
        return min(os.sysconf("SC_OPEN_MAX"), 1 << 16)
    except (OSError, ValueError):
        return 1 << 12


def _code(status: int) -> int:
    """Popen's returncode: the exit status, or minus the signal that ended it."""
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


if sys.platform == "win32":  # pragma: no cover (tether's laptop side is Linux or macOS)
    raise ImportError("launcher.transport.spawned needs fork")
