"""The wire between the agents of a multi-node job: JSON lines on one TCP connection per node,
with TCP keepalive and a heartbeat each way, so a node whose host vanishes without closing its
connections (power, network, a frozen machine) is noticed within seconds, not at torch's
collective timeout.

Two layers: the kernel's keepalive (and a user timeout for unacknowledged data) breaks a
connection to a host that no longer answers at all; the heartbeat, a `{"beat": ...}` line
every BEAT_S from a thread of each agent, also catches an agent that still holds its socket
but says nothing (a stopped process, a wedged host). A peer silent for SILENT_S has failed.
"""

from __future__ import annotations

import json
import socket
import threading
import weakref
from typing import Callable, Dict, Iterable, Iterator, List, Optional

from .clock import REAL, Clock

MAX_LINE = 64 * 1024
BEAT_S = 2.0              # how often each agent says it is there
SILENT_S = 15.0           # a peer heard nothing from for this long has failed
KEEPALIVE = {"TCP_KEEPIDLE": 4, "TCP_KEEPINTVL": 2, "TCP_KEEPCNT": 4}   # a dead host: ~12 s
USER_TIMEOUT_MS = 15_000  # data unacknowledged this long breaks the connection
SEND_TIMEOUT_S = 10       # a peer that stopped reading cannot block a sender for ever

_locks: "weakref.WeakKeyDictionary[socket.socket, threading.Lock]" = weakref.WeakKeyDictionary()
_locks_lock = threading.Lock()


def tune(sock: socket.socket) -> None:
    """Keepalive, a user timeout and a send timeout on a connection between agents (Linux
    names; where an option is missing the heartbeat alone does the work)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in KEEPALIVE.items():
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, USER_TIMEOUT_MS)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                        SEND_TIMEOUT_S.to_bytes(8, "little") + (0).to_bytes(8, "little"))
    except OSError:
        pass


def send(sock: Optional[socket.socket], msg: dict) -> bool:
    """One line, whole: the heartbeat thread and the agent's loop share the socket."""
    if sock is None:
        return False
    with _locks_lock:
        lock = _locks.setdefault(sock, threading.Lock())
    try:
        with lock:
            sock.sendall(json.dumps(msg).encode() + b"\n")
        return True
    except OSError:
        return False


def hang_up(sock: socket.socket) -> None:
    """Closes a connection another thread may be reading (close alone does not wake it)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def lines(sock: socket.socket) -> Iterator[dict]:
    """Each JSON object a peer sends; ends at EOF, at an over-long line or at one that is
    not an object (a peer that talks nonsense is treated as gone)."""
    f = sock.makefile("rb")
    while True:
        try:
            line = f.readline(MAX_LINE + 1)
        except OSError:
            return
        if not line or len(line) > MAX_LINE:
            return
        try:
            msg = json.loads(line)
        except ValueError:
            return
        if not isinstance(msg, dict):
            return
        yield msg


class Hearing:
    """When each peer was last heard from, on the agent's clock; who has gone silent."""

    def __init__(self, clock: Clock = REAL, silent_s: float = SILENT_S) -> None:
        self.clock, self.silent_s = clock, silent_s
        self.last: Dict[int, float] = {}

    def heard(self, node: int) -> None:
        self.last[node] = self.clock.monotonic()

    def forget(self, node: int) -> None:
        self.last.pop(node, None)

    def silent(self) -> List[int]:
        now = self.clock.monotonic()
        return sorted(n for n, t in self.last.items() if now - t > self.silent_s)

    def why(self) -> str:
        return (f"its agent went silent: nothing heard from it for {self.silent_s:g}s "
                "(its host down, frozen or cut off from the others)")


class Beater:
    """A thread that sends a heartbeat to each of targets() every beat_s until stopped."""

    def __init__(self, targets: Callable[[], Iterable[socket.socket]], beat: dict, beat_s: float = BEAT_S) -> None:
        self.targets, self.beat, self.beat_s = targets, beat, beat_s
        self.stopped = threading.Event()
        threading.Thread(target=self._run, daemon=True, name="peers-beat").start()

    def _run(self) -> None:
        while not self.stopped.wait(self.beat_s):
            for sock in list(self.targets()):
                send(sock, self.beat)

    def stop(self) -> None:
        self.stopped.set()
