"""The agents of a multi-node job talking to each other: node 0's agent listens on the control
port (master_port + 1); every other node's agent connects to it once per attempt.

Per attempt: hello (the steps it could resume from) -> probe (node 0 listens on the master
port, each node connects to it) -> go (or why not, and the step all nodes resume from) ->
the workloads run; a node whose workload ends badly is reported and node 0 tells the others
to abort (they are not left blocked in a collective) -> each node's outcome -> one verdict
for the job, the same on every node. JSON lines; everything a peer sends is checked. Each side beats and a peer heard
nothing from for the plan's silence_s has failed, as one whose connection closed (peer_wire.py): a
host that vanishes without closing its connections is caught in seconds, not at torch's
collective timeout or SETTLE_S.
"""

from __future__ import annotations

import hmac
import queue
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from .clock import REAL, Clock
from .peer_wire import Beater, Hearing, beat_for, hang_up, lines, send, tune
from .protocol import FailureClass, JobState
from .rendezvous import NodePlan, reach

Idle = Callable[[], Optional[bool]]   # runs the agent's duties while waiting; True: stop waiting
PROBE_TIMEOUT_S = 5.0
SETTLE_S = 300.0          # how long node 0 waits for every node's outcome of an attempt


@dataclass(frozen=True)
class Gate:
    ok: bool
    reason: str = ""
    step: Optional[int] = None     # the newest step every node can resume from


@dataclass(frozen=True)
class Report:
    """One node's outcome of an attempt (or the job's, once combined)."""

    state: JobState
    reason: str
    failure: Optional[FailureClass] = None
    aborted: bool = False          # it ended because a peer failed: not the cause

    def to_json(self) -> dict:
        return {"state": self.state.value, "reason": self.reason,
                "failure": self.failure.value if self.failure else None, "aborted": self.aborted}

    @classmethod
    def from_json(cls, d: dict) -> "Report":
        failure = d.get("failure")
        return cls(JobState(d["state"]), str(d.get("reason") or "")[:500],
                   FailureClass(failure) if failure else None, bool(d.get("aborted")))


def combine(reports: Dict[int, Report]) -> Report:
    """The job's outcome: a stop wins; then the cause of a failure (a node that failed by
    itself, infra before user); all succeeded: the job succeeded."""
    def rank(item: Tuple[int, Report]) -> tuple:
        node, r = item
        return (r.state != JobState.STOPPED, r.state != JobState.FAILED, r.aborted,
                r.failure == FailureClass.USER, node)

    node, worst = min(reports.items(), key=rank)
    if worst.state == JobState.SUCCEEDED:
        return Report(JobState.SUCCEEDED, f"all {len(reports)} nodes finished: {worst.reason}")
    return Report(worst.state, f"node {node}: {worst.reason}", worst.failure)


def _node_of(msg: dict, plan: NodePlan) -> Optional[int]:
    """The node a connection's first message says it is: only with the job's token (anyone
    who can reach the control port could otherwise speak for a node)."""
    node, token = msg.get("hello"), msg.get("token")
    if not (isinstance(token, str) and hmac.compare_digest(token.encode(), plan.token.encode())):
        return None
    return node if isinstance(node, int) and 0 < node < plan.count else None


def _steps(msg: dict) -> List[int]:
    steps = msg.get("steps")
    return [s for s in steps if isinstance(s, int) and s >= 0][:1000] if isinstance(steps, list) else []


class Coordinator:
    """Node 0's side. Reader threads only queue what arrives; the agent's loop handles it."""

    def __init__(self, plan: NodePlan, clock: Clock = REAL, beat_s: Optional[float] = None,
                 silent_s: Optional[float] = None) -> None:
        """beat_s, silent_s: the plan's (host.node_silence_s), unless a test says otherwise."""
        self.plan = plan
        silent_s = plan.silence_s if silent_s is None else silent_s
        beat_s = beat_for(silent_s) if beat_s is None else beat_s
        self.server = socket.create_server(("", plan.control_port))
        self.hearing = Hearing(clock, silent_s)
        self.inbox: "queue.Queue[Tuple[Optional[int], socket.socket, dict]]" = queue.Queue()
        self.conns: Dict[int, socket.socket] = {}
        self.hellos: Dict[int, dict] = {}
        self.probed: Dict[int, Optional[str]] = {}
        self.ended: Dict[int, Report] = {}
        self.aborted_with: Optional[str] = None
        self.beater = Beater(lambda: list(self.conns.values()), {"beat": 0}, beat_s)
        threading.Thread(target=self._accept, daemon=True, name="peers-accept").start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.server.accept()
            except OSError:
                return
            tune(sock, self.hearing.silent_s)
            threading.Thread(target=self._read, args=(sock,), daemon=True, name="peers-read").start()

    def _read(self, sock: socket.socket) -> None:
        node = None
        for msg in lines(sock):
            node = node if node is not None else _node_of(msg, self.plan)
            if node is None:
                break
            self.inbox.put((node, sock, msg))
        self.inbox.put((node, sock, {"lost": True}))

    def _pump(self, wait: float) -> None:
        try:
            node, sock, msg = self.inbox.get(timeout=wait)
        except queue.Empty:
            return
        if node is None:
            sock.close()
            return
        if "hello" in msg:
            old = self.conns.get(node)
            if old is not None and old is not sock:
                hang_up(old)
            self.conns[node], self.hellos[node] = sock, msg
        if self.conns.get(node) is not sock:
            return  # an earlier connection of that node (or one found silent): stale
        if "lost" in msg:
            del self.conns[node]
            self.hearing.forget(node)
            self.ended.setdefault(node, Report(JobState.FAILED, "its agent or host went away", FailureClass.INFRA))
            return
        self.hearing.heard(node)  # any line, a beat included, says the node is there
        if "probed" in msg:
            problem = msg.get("problem")
            self.probed[node] = str(problem)[:200] if problem is not None else None
        elif "ended" in msg:
            try:
                self.ended[node] = Report.from_json(msg)
            except (KeyError, ValueError):
                self.ended[node] = Report(JobState.FAILED, "its outcome was not understood", FailureClass.INFRA)

    def _drop_silent(self) -> None:
        """A connected node heard nothing from for silent_s has failed: its connection is
        hung up (a late word from it is stale) and its outcome is that failure."""
        for n in self.hearing.silent():
            self.hearing.forget(n)
            sock = self.conns.pop(n, None)
            if sock is not None:
                hang_up(sock)
                self.ended.setdefault(n, Report(JobState.FAILED, self.hearing.why(), FailureClass.INFRA))

    def _members(self) -> range:
        return range(1, self.plan.count)

    def gather(self, own_steps: List[int], idle: Idle) -> Gate:
        """Waits for every node, probes the master port from each, and says go (or why not)."""
        p = self.plan
        probe = socket.create_server(("", p.master_port), backlog=64)  # only connected to, never read
        try:
            deadline = time.monotonic() + p.join_timeout_s
            while any(n not in self.hellos for n in self._members()) and time.monotonic() < deadline:
                self._pump(0.2)
                if idle():  # the job is being stopped
                    break
            missing = [n for n in self._members() if n not in self.hellos]
            if missing:
                gate = Gate(False, f"node {missing[0]} did not join within {p.join_timeout_s:g}s (it must reach "
                                   f"{p.master_addr}:{p.control_port} and {p.master_addr}:{p.master_port})")
                return self._decide(gate)
            self.probed.clear()
            for n in self._members():
                send(self.conns.get(n), {"probe": p.master_port})
            deadline = time.monotonic() + 4 * PROBE_TIMEOUT_S
            while any(n not in self.probed for n in self._members()) and time.monotonic() < deadline:
                self._pump(0.2)
            for n in self._members():
                problem = self.probed.get(n, "no answer")
                if problem is not None:
                    return self._decide(Gate(False, f"node {n} cannot reach {p.master_addr}:{p.master_port} "
                                                    f"({problem}): open that port between the hosts"))
            common = set(own_steps)
            for n in self._members():
                common &= set(_steps(self.hellos[n]))
            return self._decide(Gate(True, "", max(common) if common else None))
        finally:
            probe.close()

    def _decide(self, gate: Gate) -> Gate:
        for n in list(self.conns):
            send(self.conns[n], {"go": gate.ok, "reason": gate.reason, "step": gate.step})
        self.hellos.clear()
        self.ended.clear()
        self.aborted_with = None
        return gate

    def abort_reason(self) -> Optional[str]:
        """Why this node's workload must stop now (another node failed), once; None if not."""
        while not self.inbox.empty():
            self._pump(0)
        self._drop_silent()
        bad = {n: r for n, r in self.ended.items() if r.state != JobState.SUCCEEDED}
        if bad and self.aborted_with is None:
            node = min(bad)
            self.abort(f"node {node}: {bad[node].reason}")
            return self.aborted_with
        return None

    def abort(self, reason: str) -> None:
        self.aborted_with = reason
        for sock in list(self.conns.values()):
            send(sock, {"abort": reason})

    def settle(self, own: Report, idle: Idle, wait_s: float = SETTLE_S) -> Report:
        """Every node's outcome, combined and told to all; a node silent past wait_s failed."""
        if own.state != JobState.SUCCEEDED and self.aborted_with is None:
            self.abort(f"node 0: {own.reason}")
        deadline = time.monotonic() + wait_s
        while any(n not in self.ended for n in self._members()) and time.monotonic() < deadline:
            self._pump(0.2)
            self._drop_silent()
            idle()
        reports = {0: own}
        for n in self._members():
            reports[n] = self.ended.get(n) or Report(JobState.FAILED, f"did not report within {wait_s:g}s",
                                                     FailureClass.INFRA)
        verdict = combine(reports)
        for n, sock in list(self.conns.items()):
            send(sock, {"verdict": verdict.to_json()})
        self.ended.clear()
        return verdict

    def close(self) -> None:
        self.beater.stop()
        hang_up(self.server)  # wakes the accept thread
        for sock in list(self.conns.values()):
            hang_up(sock)


class Member:
    """Every other node's side: one connection to node 0 per attempt."""

    def __init__(self, plan: NodePlan, clock: Clock = REAL, beat_s: Optional[float] = None,
                 silent_s: Optional[float] = None) -> None:
        silent_s = plan.silence_s if silent_s is None else silent_s
        self.plan, self.beat_s = plan, beat_for(silent_s) if beat_s is None else beat_s
        self.sock: Optional[socket.socket] = None
        self.inbox: "queue.Queue[dict]" = queue.Queue()
        self.aborted_with: Optional[str] = None
        self.hearing = Hearing(clock, silent_s)
        self.silenced: Optional[str] = None   # why node 0 counts as gone though connected
        self.beater: Optional[Beater] = None

    def _where(self, port: int) -> str:
        return f"{self.plan.master_addr}:{port}"

    def _connect(self, idle: Idle) -> Optional[str]:
        """None once connected to node 0's agent; else the last reason it could not be."""
        p, problem = self.plan, "no answer"
        deadline = time.monotonic() + p.join_timeout_s
        while time.monotonic() < deadline:
            try:
                self.sock = socket.create_connection((p.master_addr, p.control_port), timeout=PROBE_TIMEOUT_S)
                self.sock.settimeout(None)
                tune(self.sock, self.hearing.silent_s)
                return None
            except socket.timeout:
                problem = "timed out"
            except OSError as exc:
                problem = exc.strerror or str(exc)
                time.sleep(0.5)  # node 0's agent may not listen yet
            if idle():  # the job is being stopped
                break
        return problem

    def _read(self, sock: socket.socket) -> None:
        for msg in lines(sock):
            if self.sock is sock:
                self.hearing.heard(0)
            if "beat" in msg:
                continue
            if "abort" in msg:
                self.aborted_with = self.aborted_with or str(msg["abort"])[:500]
            else:
                self.inbox.put(msg)
        if self.sock is sock:  # node 0 went away mid-attempt: this workload cannot go on either
            self.aborted_with = self.aborted_with or self._gone()
        self.inbox.put({"lost": True})

    def _gone(self) -> str:
        return self.silenced or f"lost the connection to node 0 ({self._where(self.plan.control_port)})"

    def _check_silence(self) -> bool:
        """Node 0 heard nothing from for silent_s has failed (its host may never close the
        connection): this node's workload must stop, as for a closed one."""
        if self.sock is not None and self.silenced is None and 0 in self.hearing.silent():
            self.silenced = f"node 0 ({self._where(self.plan.control_port)}): {self.hearing.why()}"
            self.aborted_with = self.aborted_with or self.silenced
        return self.silenced is not None

    def _next(self, key: str, wait_s: float, idle: Idle) -> Optional[dict]:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                msg = self.inbox.get(timeout=0.2)
            except queue.Empty:
                if idle() or self._check_silence():
                    return None
                continue
            if key in msg or "lost" in msg:
                return None if "lost" in msg else msg
        return None

    def gather(self, own_steps: List[int], idle: Idle) -> Gate:
        p = self.plan
        self.close()
        self.aborted_with, self.silenced, self.inbox = None, None, queue.Queue()
        problem = self._connect(idle)
        if problem is not None:
            return Gate(False, f"node {p.rank} cannot reach {self._where(p.control_port)} ({problem}): tether's "
                               "control port, beside the master port, must be open between the hosts")
        sock = self.sock
        self.hearing.heard(0)
        threading.Thread(target=self._read, args=(sock,), daemon=True, name="peers-read").start()
        send(sock, {"hello": p.rank, "token": p.token, "steps": sorted(set(own_steps))})
        self.beater = Beater(lambda: [sock] if self.sock is sock else [], {"beat": p.rank}, self.beat_s)
        asked = self._next("probe", p.join_timeout_s + 60, idle)
        if asked is not None:
            send(sock, {"probed": p.rank, "problem": reach(p.master_addr, p.master_port, PROBE_TIMEOUT_S)})
            go = self._next("go", 4 * PROBE_TIMEOUT_S + 30, idle)
        else:
            go = self._next("go", 1, idle)  # node 0 may have said no before any probe
        if go is None:
            return Gate(False, f"{self._gone()} while joining")
        step = go.get("step")
        return Gate(go.get("go") is True, str(go.get("reason") or "")[:500],
                    step if isinstance(step, int) and step >= 0 else None)

    def abort_reason(self) -> Optional[str]:
        self._check_silence()
        return self.aborted_with

    def abort(self, reason: str) -> None:
        """Nothing to tell: its outcome, sent at settle, makes node 0 abort the others."""

    def settle(self, own: Report, idle: Idle, wait_s: float = SETTLE_S) -> Report:
        sent = self.sock is not None and send(self.sock, {"ended": self.plan.rank, **own.to_json()})
        got = self._next("verdict", wait_s, idle) if sent else None
        gone = self._gone()
        self.close()
        if got is None:
            return Report(JobState.FAILED, f"node {self.plan.rank}: {gone}", FailureClass.INFRA)
        try:
            return Report.from_json(got["verdict"])
        except (KeyError, TypeError, ValueError):
            return Report(JobState.FAILED, "node 0's verdict was not understood", FailureClass.INFRA)

    def close(self) -> None:
        if self.beater is not None:
            self.beater.stop()
            self.beater = None
        if self.sock is not None:
            sock, self.sock = self.sock, None
            hang_up(sock)
