"""A laptop-side keeper of one host's status channel: `tether status JOB` asked through it is
a message over a local socket and an open `agent serve`, not an ssh command and a Python
started on the host (the two costs a shared connection leaves).

One keeper per `agent serve` command line (host, its ssh settings, the runtime), started
detached by a status read that went over OpenSSH (launcher/early.py, after the read has
printed), and ended when idle for TETHER_SSH_PERSIST_S (as the shared connection is) or when
its channel closes. Its socket is in tether's private control folder (0700, the socket 0600).

It only forwards status reads: a request names job folders and a row count, and the keeper
asks `agent serve` for exactly that. Nothing else reaches the host through it, and its
answer is read by the same code as `agent status`'s (hostile input either way). Any failure
(no keeper, a slow or closed one, an error answer) only means the read runs as it would
without it: over ssh, with every host-key check that path makes.

Light to load: early.py asks the keeper before the rest of tether is imported."""

from __future__ import annotations

import json
import os
import select
import socket
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional, Sequence

MAX_LINE = 1 << 24          # an answer (rows of many jobs) or a request, at most
MAX_DIRS = 512
ANSWER_WAIT_S = 5.0         # serve answers in milliseconds: one slower than this is stuck, the keeper ends
CLIENT_WAIT_S = 5.0         # a read waits this long for its keeper, then goes over ssh


def socket_path(control: str, serve_argv: Sequence[str]) -> str:
    """Short (a socket path has ~100 bytes) and one per serve command line."""
    import hashlib

    key = hashlib.sha256("\0".join(serve_argv).encode()).hexdigest()[:16]
    return os.path.join(control, f"k-{key}")


def request(dirs: Sequence[str], recent: int) -> bytes:
    return json.dumps({"dirs": list(dirs), "recent": int(recent)}).encode() + b"\n"


class Asked:
    """A status read sent to a keeper, its answer taken later (OpenSshHost.run takes it in
    place of the ssh command it would have run). answer(): the bytes `agent status` would
    have printed, or None: run the command after all."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def answer(self, timeout: float = CLIENT_WAIT_S) -> Optional[bytes]:
        try:
            self.sock.settimeout(timeout)
            data = _recv_line(self.sock)
        except OSError:
            return None
        finally:
            self.close()
        if not data.startswith(b"[") or not data.endswith(b"\n"):
            return None  # the keeper's "no" (or a cut answer): ask the host directly
        return data

    # What prestarted.discard asks of what it holds.
    def poll(self) -> int:
        return 0

    def kill(self) -> None:
        self.close()

    def wait(self, timeout: Optional[float] = None) -> int:
        return 0

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _recv_line(sock: socket.socket) -> bytes:
    """Up to and with the first newline, or what came before the other end closed (at most
    about MAX_LINE); OSError when the socket's timeout passes first."""
    data = b""
    while not data.endswith(b"\n") and len(data) <= MAX_LINE:
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        data += chunk
    return data


def _connected(path: str) -> Optional[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(1.0)
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


def ask(path: str, dirs: Sequence[str], recent: int) -> Optional[Asked]:
    """The request sent to the keeper at path; None where none listens there, or where the
    folder is not the user's own (a shared /tmp can be cleaned and the folder made again by
    someone else)."""
    from launcher.home import private_folder

    sock = _connected(path) if private_folder(os.path.dirname(path)) else None
    if sock is None:
        return None
    try:
        sock.sendall(request(dirs, recent))
    except OSError:
        sock.close()
        return None
    return Asked(sock)


def alive(path: str) -> bool:
    sock = _connected(path)
    if sock is not None:
        sock.close()
    return sock is not None


def start_detached(path: str, serve_argv: Sequence[str], idle_s: float) -> None:
    """A keeper for serve_argv at path, in a session of its own (it outlives this command)."""
    import subprocess

    from launcher.transport.child_env import child_environ

    subprocess.Popen([sys.executable, "-m", "launcher.transport.keeper", path, str(idle_s), json.dumps(list(serve_argv))],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True, env=child_environ(), cwd="/")


# -- the keeper process ------------------------------------------------------------------------

class _Lines:
    """Whole lines from a pipe, each within a deadline."""

    def __init__(self, fd: int) -> None:
        self.fd, self.buffer = fd, b""

    def line(self, timeout: float) -> Optional[bytes]:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or len(self.buffer) > MAX_LINE or not select.select([self.fd], [], [], left)[0]:
                return None
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line


def _json_or_none(line: bytes) -> object:
    try:
        return json.loads(line)
    except ValueError:
        return None


def _checked(raw: bytes) -> Optional[dict]:
    """A client's request, or None: job folders as absolute paths, a row count."""
    try:
        req = json.loads(raw)
        dirs, recent = req["dirs"], req["recent"]
    except (ValueError, KeyError, TypeError):
        return None
    if (not isinstance(dirs, list) or not 0 < len(dirs) <= MAX_DIRS or not isinstance(recent, int)
            or isinstance(recent, bool) or not 0 <= recent <= 512):
        return None
    if not all(isinstance(d, str) and d.startswith("/") and "\0" not in d and "\n" not in d for d in dirs):
        return None
    return {"op": "status", "dirs": dirs, "recent": recent}


def serve(path: str, idle_s: float, serve_argv: List[str]) -> int:
    import subprocess

    from launcher.transport.child_env import child_environ

    channel = subprocess.Popen(serve_argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, env=child_environ())
    lines = _Lines(channel.stdout.fileno())
    listener, bound_ino = None, 0
    try:
        # The host reached (its key checked by ssh as always) and an agent that reads job folders:
        # an older runtime's serve does not, and a keeper for it would only be refused every time.
        channel.stdin.write(b'{"op": "status", "dirs": [], "recent": 0}\n')
        channel.stdin.flush()
        first = lines.line(ANSWER_WAIT_S + 55)  # the connection's handshake, the first time
        if first is None or lines.buffer or _json_or_none(first) != {"ok": True, "result": []}:
            return 1  # unreachable, a refused key, or an agent that cannot: nothing kept
        if not _locked(path):
            return 0  # another keeper has it
        listener = _listen(path)
        if listener is None:
            return 0  # another keeper has it
        bound_ino = os.stat(path).st_ino
        while True:
            ready = select.select([listener, channel.stdout], [], [], idle_s)[0]
            if not ready or channel.stdout in ready:
                return 0  # idle long enough, or the channel closed (or spoke unasked)
            conn, _ = listener.accept()
            with conn:
                if not _relay(conn, channel, lines):
                    return 0
    except (OSError, ValueError):
        return 1
    finally:
        if listener is not None:
            _unlisten(path, listener, bound_ino)
        try:
            channel.stdin.close()
        except OSError:
            pass
        try:
            channel.wait(timeout=5)
        except subprocess.TimeoutExpired:
            channel.kill()
            channel.wait()


def _relay(conn: socket.socket, channel, lines: _Lines) -> bool:
    """One client's request through the channel and its answer back; False when the channel
    failed (the keeper ends)."""
    conn.settimeout(5)
    try:
        raw = _recv_line(conn)
    except OSError:
        return True
    req = _checked(raw)
    if req is None:
        _send(conn, b'{"refused": "not a status read"}\n')
        return True
    channel.stdin.write(json.dumps(req).encode() + b"\n")
    channel.stdin.flush()
    line = lines.line(ANSWER_WAIT_S)
    if line is None or lines.buffer:  # stuck, or more than one answer: the channel is not in step
        _send(conn, b'{"refused": "the host did not answer in step"}\n')
        return False
    try:
        answer = json.loads(line)
    except ValueError:
        answer = None
    result = answer.get("result") if isinstance(answer, dict) and answer.get("ok") is True else None
    if not isinstance(result, list) or len(result) != len(req["dirs"]):
        _send(conn, b'{"refused": "the agent did not answer this read"}\n')
        return False
    _send(conn, json.dumps(result).encode() + b"\n")
    return True


def _send(conn: socket.socket, data: bytes) -> None:
    try:
        conn.sendall(data)
    except OSError:
        pass


_lock_fd = -1   # held for the keeper's life: one keeper per socket, no race between two starting


def _locked(path: str) -> bool:
    global _lock_fd
    import fcntl

    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _lock_fd = fd
    return True


def _listen(path: str) -> Optional[socket.socket]:
    """The socket at path (0600), or None where a live keeper still answers there (its lock
    file was removed under it)."""
    import stat

    if alive(path):
        return None
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)  # a keeper that died without cleaning up (never anything but a socket)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    except OSError:
        sock.close()
        return None  # another keeper bound it first
    finally:
        os.umask(old)
    sock.listen(16)
    return sock


def _unlisten(path: str, sock: socket.socket, bound_ino: int) -> None:
    """Removes the socket file only if it is still the one this keeper bound."""
    try:
        if os.stat(path).st_ino == bound_ino:
            os.unlink(path)
    except OSError:
        pass
    sock.close()


def _ended_by_signal(signum: int, _frame: object) -> None:
    raise SystemExit(0)  # SIGTERM, SIGHUP: the socket is removed and the channel closed on the way out


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, _ended_by_signal)
    signal.signal(signal.SIGHUP, _ended_by_signal)
    sys.exit(serve(sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3])))
