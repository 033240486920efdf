"""The wire between the agents of a multi-node job: JSON lines on one TCP connection per node,
with TCP keepalive and a heartbeat each way, so a node whose host vanishes without closing its
connections (power, network, a frozen machine) is noticed within seconds, not at torch's
collective timeout.

Two layers: the kernel's keepalive (and a user timeout for unacknowledged data) breaks a
connection to a host that no longer answers at all; the heartbeat, a `{"beat": ...}` line
every beat_for(limit) from a thread of each agent, also catches an agent that still holds its
socket but says nothing (a stopped process, a wedged host). A peer silent for the job's limit
(host.node_silence_s, SILENT_S by default) has failed; the beat and the kernel's timeouts are
made from that limit, so a longer one is not cut short by the connection breaking first.
"""

from __future__ import annotations

import json
import socket
import threading
import weakref
from typing import Callable, Dict, Iterable, Iterator, List, Optional

from .clock import REAL, Clock

MAX_LINE = 64 * 1024
SILENT_S = 15.0           # by default a peer heard nothing from for this long has failed
SEND_TIMEOUT_S = 10       # a peer that stopped reading cannot block a sender for ever

_locks: "weakref.WeakKeyDictionary[socket.socket, threading.Lock]" = weakref.WeakKeyDictionary()
_locks_lock = threading.Lock()


def beat_for(silent_s: float) -> float:
    """How often each agent says it is there: 7.5 beats within the limit (2 s for 15 s), so a
    late one or two are not silence; from 0.5 s (no flood) to 10 s."""
    return min(10.0, max(0.5, silent_s / 7.5))


def keepalive_for(silent_s: float) -> Dict[str, int]:
    """The kernel's probes of a host that no longer answers at all: the connection breaks a
    little before the limit (15 s: idle 4, then 4 probes 2 s apart, ~12 s)."""
    return {"TCP_KEEPIDLE": max(1, round(silent_s * 4 / 15)), "TCP_KEEPINTVL": max(1, round(silent_s * 2 / 15)),
            "TCP_KEEPCNT": 4}


def tune(sock: socket.socket, silent_s: float = SILENT_S) -> None:
    """Keepalive, a user timeout (data unacknowledged for the limit breaks the connection) and
    a send timeout on a connection between agents (Linux names; where an option is missing the
    heartbeat alone does the work)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in keepalive_for(silent_s).items():
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(silent_s * 1000))
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

    def __init__(self, targets: Callable[[], Iterable[socket.socket]], beat: dict, beat_s: float) -> None:
        self.targets, self.beat, self.beat_s = targets, beat, beat_s
        self.stopped = threading.Event()
        threading.Thread(target=self._run, daemon=True, name="peers-beat").start()

    def _run(self) -> None:
        while not self.stopped.wait(self.beat_s):
            for sock in list(self.targets()):
                send(sock, self.beat)

    def stop(self) -> None:
        self.stopped.set()
