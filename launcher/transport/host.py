"""A host is a few verbs: run a command, stream one, open a shell. LocalHost is this machine;
an SSH host is OpenSshHost (the system's ssh, one connection per host shared by every
tether command: openssh.py) or, where there is no ssh, SshHost (paramiko: paramiko_host.py). Every command is an argv list, quoted once here (shlex.join), never built by hand.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import threading
from dataclasses import dataclass
from typing import IO, Any, List, Optional, Protocol, Sequence, Union

from launcher.errors import RemoteError
from launcher.transport.child_env import child_environ as child_environ  # the one filter, re-exported
from launcher.transport.spawned import Spawned


@dataclass(frozen=True)
class Completed:
    argv: Sequence[str]
    returncode: int
    stdout: bytes
    stderr: bytes

    def check(self, what: str) -> "Completed":
        if self.returncode != 0:
            tail = self.stderr.decode(errors="replace").strip().splitlines()[-3:]
            detail = " | ".join(tail) or f"exit code {self.returncode}"
            raise RemoteError(f"{what} failed on the host: {detail}")
        return self

    def json(self) -> Any:
        return json.loads(self.stdout)


class Stream(Protocol):
    """A running remote command with byte pipes."""

    stdin: IO[bytes]
    stdout: IO[bytes]

    def close_stdin(self) -> None: ...
    def read_some(self) -> bytes: ...   # what stdout has now (at least a byte), b"" at its end
    def wait(self) -> int: ...
    def stderr_text(self) -> str: ...
    def kill(self) -> None: ...


class Host(Protocol):
    name: str

    def run(self, argv: Sequence[str], *, input: Optional[bytes] = None, timeout: float = 120) -> Completed: ...
    def stream(self, argv: Sequence[str]) -> Stream: ...
    def shell_argv(self, remote_argv: Optional[Sequence[str]], cwd: str) -> List[str]: ...
    def close(self) -> None: ...


# -- local --------------------------------------------------------------------------------


class KilledAfter:
    """`with KilledAfter(seconds, stream) as watch:` the stream is killed if the block takes
    longer than seconds (a read or write on it then ends); watch.expired says whether it was.
    Not once the block is done: a result that came stands. seconds None: no limit."""

    def __init__(self, seconds: Optional[float], stream: "Stream") -> None:
        self.expired = False
        self._stream = stream
        self._lock = threading.Lock()
        self._done = False
        self._timer = threading.Timer(seconds, self._expire) if seconds else None

    def __enter__(self) -> "KilledAfter":
        if self._timer is not None:
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._done = True
        if self._timer is not None:
            self._timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            if not self._done:
                self.expired = True
                self._stream.kill()


DRAIN_S = 10.0   # a command's stderr, read to its end once it has exited, at most


class ProcessStream:
    """A running local process with pipes: a LocalHost command, or OpenSSH running one there."""

    def __init__(self, argv: Sequence[str], started: Optional[Union[subprocess.Popen, Spawned]] = None) -> None:
        """started: that command, already running with its pipes (launcher/early.py)."""
        self.argv = list(argv)
        self.proc = started or subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE, env=child_environ())
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self._err: List[bytes] = []
        self._t = threading.Thread(target=self._drain, daemon=True)
        self._t.start()

    def _drain(self) -> None:
        """Kept as it comes: what a command said stands even where a process it left behind
        holds the pipe open (wait gives up on the rest after DRAIN_S)."""
        fd = self.proc.stderr.fileno()
        while chunk := os.read(fd, 65536):
            self._err.append(chunk)

    def read_some(self) -> bytes:
        return os.read(self.proc.stdout.fileno(), 65536)

    def close_stdin(self) -> None:
        try:
            self.stdin.close()
        except BrokenPipeError:
            pass

    def wait(self) -> int:
        rc = self.proc.wait()
        self._t.join(DRAIN_S)  # a process it left behind may hold stderr open: not waited for
        return rc

    def stderr_text(self) -> str:
        return b"".join(self._err).decode(errors="replace")

    def kill(self) -> None:
        self.proc.kill()


class LocalHost:
    """This machine, through subprocess: the `local` provider and `make demo`."""

    name = "local"

    def run(self, argv: Sequence[str], *, input: Optional[bytes] = None, timeout: float = 120) -> Completed:
        try:
            p = subprocess.run(list(argv), input=input, capture_output=True, timeout=timeout, env=child_environ())
        except FileNotFoundError as exc:
            return Completed(argv, 127, b"", str(exc).encode())
        except subprocess.TimeoutExpired:
            raise RemoteError(f"{shlex.join(argv)[:80]} did not finish within {timeout:.0f}s") from None
        return Completed(argv, p.returncode, p.stdout, p.stderr)

    def stream(self, argv: Sequence[str]) -> Stream:
        return ProcessStream(argv)

    def shell_argv(self, remote_argv: Optional[Sequence[str]], cwd: str) -> List[str]:
        return ["sh", "-c", f"cd {shlex.quote(cwd)} && {user_command(remote_argv)}"]

    def close(self) -> None:
        pass


def user_command(remote_argv: Optional[Sequence[str]]) -> str:
    """`tether ssh JOB -- ARGS`: the user's own shell command line, joined with spaces as
    OpenSSH does (`-- 'make && ./run'` runs both); no ARGS: a login shell."""
    return " ".join(remote_argv) if remote_argv else 'exec "${SHELL:-/bin/sh}" -l'


def command_label(argv: Sequence[str]) -> str:
    text = shlex.join(argv)
    return text if len(text) <= 80 else text[:77] + "..."
