"""A node that goes silent without closing its connection (host gone, machine frozen) is
failed within seconds: the rule on a fake clock, then real agents' sockets with a peer process
stopped by SIGSTOP and a node 0 that stops talking."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from test_nodes_wire import free_pair

from agent.clock import FakeClock
from agent.peer_wire import send
from agent.peers import Coordinator, Member, Report
from agent.protocol import FailureClass, JobState
from agent.rendezvous import NodePlan

REPO = Path(__file__).resolve().parent.parent
SILENT = "its agent went silent: nothing heard from it for"


def joined(head: Coordinator, member: Member) -> None:
    got = {}
    t = threading.Thread(target=lambda: got.update(gate=member.gather([], lambda: None)))
    t.start()
    assert head.gather([], lambda: None).ok
    t.join(10)
    assert got["gate"].ok


def wait_for_inbox(head: Coordinator) -> None:
    for _ in range(200):
        if not head.inbox.empty():
            return
        time.sleep(0.01)
    raise AssertionError("node 1's line never reached node 0")


def test_a_peer_is_failed_after_15s_of_silence_and_each_beat_restarts_the_count():
    clock, port = FakeClock(), free_pair()
    head = Coordinator(NodePlan(0, 2, "127.0.0.1", port, join_timeout_s=10), clock, beat_s=3600)
    member = Member(NodePlan(1, 2, "127.0.0.1", port, join_timeout_s=10), clock, beat_s=3600)
    try:
        joined(head, member)
        for sock in (member.sock, head.conns[1]):  # a vanished host also breaks the connection itself
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 4
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 15_000
        clock.advance(14)
        assert head.abort_reason() is None and member.abort_reason() is None
        send(member.sock, {"beat": 1})  # what node 1's heartbeat thread sends
        wait_for_inbox(head)
        assert head.abort_reason() is None
        clock.advance(14)  # 28 s since joining, 14 since the beat
        assert head.abort_reason() is None
        assert member.abort_reason() == f"node 0 (127.0.0.1:{port + 1}): {SILENT} 15s " \
                                        "(its host down, frozen or cut off from the others)"
        clock.advance(2)
        assert head.abort_reason() == f"node 1: {SILENT} 15s (its host down, frozen or cut off from the others)"
        verdict = head.settle(Report(JobState.FAILED, "stopped: a peer failed", aborted=True), lambda: None, 5)
        assert verdict.state == JobState.FAILED and verdict.failure == FailureClass.INFRA
        assert verdict.reason.startswith(f"node 1: {SILENT} 15s")
    finally:
        member.close()
        head.close()



def test_the_specs_silence_limit_reaches_the_agents_and_sets_their_beat_and_keepalive():
    """host.node_silence_s: 40 -> node_facts -> spec.json's node -> NodePlan: a peer silent for
    39 s is still there, one silent for 41 s has failed; the beat (40 / 7.5) and the kernel's
    keepalive and user timeout are scaled to match, so the connection is not broken first."""
    from types import SimpleNamespace

    from launcher.jobs.launch_nodes import node_facts
    from launcher.spec import HostSpec

    host = HostSpec(provider="ssh", nodes=2, address=["a", "b"], node_silence_s=40)
    targets = [SimpleNamespace(endpoint={"host": "127.0.0.1"})] * 2
    clock, port = FakeClock(), free_pair()
    facts = [{**f, "master_port": port} for f in node_facts(SimpleNamespace(spec=SimpleNamespace(host=host)), targets)]
    plans = [NodePlan.from_json(f) for f in facts]
    assert [p.silence_s for p in plans] == [40.0, 40.0]
    head, member = Coordinator(plans[0], clock), Member(plans[1], clock)
    try:
        assert head.beater.beat_s == member.beat_s == 40 / 7.5
        joined(head, member)
        for sock in (member.sock, head.conns[1]):
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 40_000
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 11
        clock.advance(39)
        assert head.abort_reason() is None
        clock.advance(2)
        assert head.abort_reason() == f"node 1: {SILENT} 40s (its host down, frozen or cut off from the others)"
    finally:
        member.close()
        head.close()


def test_the_beat_follows_the_silence_limit_within_bounds():
    from agent.peer_wire import beat_for

    assert beat_for(15) == 2.0 and beat_for(3) == 0.5 and beat_for(600) == 10.0


def test_a_node_plan_without_a_silence_limit_keeps_15s_and_a_bad_one_is_named():
    import pytest

    base = {"rank": 1, "count": 2, "master_addr": "10.0.0.1", "master_port": 29500}
    assert NodePlan.from_json(base).silence_s == 15.0  # spec.json of an older launcher
    for bad in (0, -1, "15", True, float("nan"), 10_000):
        with pytest.raises(ValueError, match="node: silence_s"):
            NodePlan.from_json({**base, "silence_s": bad})

MEMBER = """
import sys, time
from agent.peers import Member
from agent.rendezvous import NodePlan
m = Member(NodePlan(1, 2, "127.0.0.1", int(sys.argv[1]), join_timeout_s=10), beat_s=0.2, silent_s=1.5)
print("joined" if m.gather([], lambda: None).ok else "refused", flush=True)
time.sleep(120)
"""


def test_a_stopped_node_is_failed_within_seconds_and_settling_does_not_wait_for_it():
    port = free_pair()
    head = Coordinator(NodePlan(0, 2, "127.0.0.1", port, join_timeout_s=10), beat_s=0.2, silent_s=1.5)
    proc = subprocess.Popen([sys.executable, "-c", MEMBER, str(port)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert head.gather([], lambda: None).ok
        assert proc.stdout.readline().strip() == "joined"
        calm = time.monotonic() + 3  # twice the silence limit: its beats keep it a node
        while time.monotonic() < calm:
            assert head.abort_reason() is None
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGSTOP)  # its socket stays open; it just says nothing
        stopped = time.monotonic()
        while head.abort_reason() is None and time.monotonic() - stopped < 10:
            time.sleep(0.05)
        took = time.monotonic() - stopped
        assert head.aborted_with == f"node 1: {SILENT} 1.5s (its host down, frozen or cut off from the others)"
        assert 1.3 < took < 4, took
        started = time.monotonic()
        verdict = head.settle(Report(JobState.FAILED, "stopped: a peer failed", aborted=True), lambda: None)
        assert time.monotonic() - started < 2  # not SETTLE_S
        assert verdict.state == JobState.FAILED and verdict.reason.startswith(f"node 1: {SILENT}")
    finally:
        proc.kill()
        proc.wait(10)
        head.close()


def test_a_node_0_that_stops_talking_stops_the_member_within_seconds():
    """Node 0 played by hand: it answers the join, then never writes or reads again."""
    port = free_pair()
    torch_port = socket.create_server(("127.0.0.1", port))
    control = socket.create_server(("127.0.0.1", port + 1))
    member = Member(NodePlan(1, 2, "127.0.0.1", port, join_timeout_s=10), beat_s=0.2, silent_s=1.5)
    got = {}
    t = threading.Thread(target=lambda: got.update(gate=member.gather([], lambda: None)))
    t.start()
    conn, _ = control.accept()
    lines = conn.makefile("rb")
    try:
        assert "hello" in json.loads(lines.readline())
        conn.sendall(b'{"probe": %d}\n' % port)
        assert json.loads(lines.readline())["problem"] is None
        conn.sendall(b'{"go": true, "step": null}\n')
        t.join(10)
        assert got["gate"].ok
        went_quiet = time.monotonic()
        assert json.loads(lines.readline()) == {"beat": 1}  # the member beats; node 0 never does
        while member.abort_reason() is None and time.monotonic() - went_quiet < 10:
            time.sleep(0.05)
        took = time.monotonic() - went_quiet
        assert member.aborted_with == f"node 0 (127.0.0.1:{port + 1}): {SILENT} 1.5s " \
                                      "(its host down, frozen or cut off from the others)"
        assert 1.3 < took < 4, took
        started = time.monotonic()
        verdict = member.settle(Report(JobState.FAILED, "stopped: a peer failed", aborted=True), lambda: None)
        assert time.monotonic() - started < 2
        assert verdict == Report(JobState.FAILED, f"node 1: {member.aborted_with}", FailureClass.INFRA)
    finally:
        member.close()
        for s in (conn, control, torch_port):
            s.close()
