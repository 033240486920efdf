"""The agents' side of a multi-node job without namespaces: the rendezvous facts from
spec.json, the interface choice, and node 0's coordinator with a member over real sockets
on 127.0.0.1 (join, probe, a failed node aborting the other, one verdict for both)."""

from __future__ import annotations

import socket
import subprocess
import threading
import time

import pytest

from agent.peers import Coordinator, Member, Report, combine
from agent.protocol import FailureClass, JobState
from agent.rendezvous import NodePlan, interface_to


def free_pair() -> int:
    """A port p with p + 1 free too (torch's and tether's)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            p = a.getsockname()[1]
            if p >= 65534:
                continue
            with socket.socket() as b:
                try:
                    b.bind(("", p + 1))
                except OSError:
                    continue
        return p
    raise RuntimeError("no free pair of ports")


@pytest.mark.parametrize("doc, expected", [
    ({"rank": 2, "count": 2, "master_addr": "10.0.0.1", "master_port": 29500}, "rank 2 of 2 nodes"),
    ({"rank": 0, "count": 2, "master_addr": "10.0.0.1; rm -rf /", "master_port": 29500}, "is not an address"),
    ({"rank": 0, "count": 2, "master_addr": "10.0.0.1", "master_port": 80}, "is not a port"),
    ("node", "expected an object"),
])
def test_bad_rendezvous_facts_are_refused(doc, expected):
    with pytest.raises(ValueError, match=expected):
        NodePlan.from_json(doc)


def test_the_workload_gets_torchruns_arguments_and_the_interface_to_the_master():
    plan = NodePlan(1, 2, "127.0.0.1", 29500)
    env = plan.env()
    assert env["TETHER_NODE_RANK"] == "1" and env["TETHER_NUM_NODES"] == "2"
    assert env["TETHER_TORCHRUN_ARGS"] == "--nnodes=2 --node_rank=1 --master_addr=127.0.0.1 --master_port=29500"
    assert "GLOO_SOCKET_IFNAME" not in env  # loopback: nothing to choose
    route = subprocess.run(["ip", "-o", "route", "get", "192.0.2.1"], capture_output=True, text=True).stdout.split()
    if "src" in route:  # this machine's own address: the interface holding it, not `lo`
        own, dev = route[route.index("src") + 1], route[route.index("dev") + 1]
        assert interface_to(own) == dev


def test_a_stop_wins_then_the_node_that_failed_by_itself():
    ok = Report(JobState.SUCCEEDED, "exited with code 0")
    killed = Report(JobState.FAILED, "workload killed by SIGKILL", FailureClass.INFRA)
    aborted = Report(JobState.FAILED, "workload exited with code 1", FailureClass.USER, aborted=True)
    assert combine({0: aborted, 1: killed}) == Report(JobState.FAILED, "node 1: workload killed by SIGKILL",
                                                       FailureClass.INFRA)
    assert combine({0: ok, 1: ok}).state == JobState.SUCCEEDED
    stopped = Report(JobState.STOPPED, "stopped by tether stop")
    assert combine({0: aborted, 1: stopped}).state == JobState.STOPPED


def test_join_probe_abort_and_one_verdict_over_real_sockets():
    port = free_pair()
    head = Coordinator(NodePlan(0, 2, "127.0.0.1", port, join_timeout_s=10, token="ab12"))
    member = Member(NodePlan(1, 2, "127.0.0.1", port, join_timeout_s=10, token="ab12"))
    got = {}
    t = threading.Thread(target=lambda: got.update(gate=member.gather([5, 10], lambda: None)))
    t.start()
    gate = head.gather([5, 10, 15], lambda: None)
    t.join(10)
    assert gate.ok and gate.step == 10 and got["gate"].ok and got["gate"].step == 10

    killed = Report(JobState.FAILED, "workload killed by SIGKILL", FailureClass.INFRA)
    t = threading.Thread(target=lambda: got.update(verdict=member.settle(killed, lambda: None)))
    t.start()
    for _ in range(100):  # node 0's duty notices the failed node and aborts its own workload
        if head.abort_reason():
            break
        threading.Event().wait(0.05)
    assert head.aborted_with == "node 1: workload killed by SIGKILL"
    own = Report(JobState.FAILED, "workload exited with code 1", FailureClass.USER, aborted=True)
    verdict = head.settle(own, lambda: None)
    t.join(10)
    assert verdict == got["verdict"] == Report(JobState.FAILED, "node 1: workload killed by SIGKILL",
                                                FailureClass.INFRA)
    head.close()


def test_an_agent_without_the_jobs_token_is_not_a_node():
    port = free_pair()
    head = Coordinator(NodePlan(0, 2, "127.0.0.1", port, join_timeout_s=2, token="ab12"))
    stranger = Member(NodePlan(1, 2, "127.0.0.1", port, join_timeout_s=2, token="ffff"))
    t = threading.Thread(target=lambda: stranger.gather([], lambda: None))
    t.start()
    gate = head.gather([], lambda: None)
    t.join(10)
    head.close()
    assert not gate.ok and gate.reason.startswith("node 1 did not join")


def test_a_node_that_never_joins_is_named():
    port = free_pair()
    head = Coordinator(NodePlan(0, 2, "127.0.0.1", port, join_timeout_s=1))
    gate = head.gather([], lambda: None)
    head.close()
    assert not gate.ok and gate.reason.startswith("node 1 did not join within 1s")
    lonely = Member(NodePlan(1, 2, "127.0.0.1", port, join_timeout_s=1))
    gate = lonely.gather([], lambda: None)
    assert not gate.ok and gate.reason.startswith(f"node 1 cannot reach 127.0.0.1:{port + 1}")


def test_a_stop_ends_the_wait_for_the_other_nodes():
    port = free_pair()
    head = Coordinator(NodePlan(0, 2, "127.0.0.1", port, join_timeout_s=60))
    started = time.monotonic()
    gate = head.gather([], lambda: True)  # the agent's duties saw a stop request
    head.close()
    assert not gate.ok and time.monotonic() - started < 5
    lonely = Member(NodePlan(1, 2, "127.0.0.1", port, join_timeout_s=60))
    started = time.monotonic()
    assert not lonely.gather([], lambda: True).ok and time.monotonic() - started < 10
