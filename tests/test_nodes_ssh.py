"""`tether ssh JOB --node K`: a shell on node K of a multi-node job (node 0 without --node);
one line for a node the job does not have, or --node on a one-host job. Registry records of
jobs on made-up hosts: OpenSSH is never started (subprocess.call is caught)."""

from __future__ import annotations

import pytest

from launcher.registry import JobRecord, Registry
from launcher.settings import places


def _node(host: str, job: str) -> dict:
    return {"endpoint": {"kind": "ssh", "host": host, "port": 22, "user": "root"}, "remote_root": f"/r-{host}",
            "job_dir": f"/r-{host}/jobs/{job}", "python": "python3", "runtime_dir": f"/r-{host}/runtime"}


@pytest.fixture
def jobs(tether_env, monkeypatch):
    """A job on two nodes (gpu-a, gpu-b) and one on one host; the OpenSSH command lines run."""
    registry = Registry(places().registry)
    try:
        for job, nodes in (("twin0001", [_node("gpu-a", "twin0001"), _node("gpu-b", "twin0001")]),
                           ("solo0001", None)):
            first = _node("gpu-a", job)
            registry.add(JobRecord(id=job, name=job[:4], project="p", spec_hash="x", provider="ssh",
                                   endpoint=first["endpoint"], remote_root=first["remote_root"],
                                   job_dir=first["job_dir"], python="python3", runtime_dir=first["runtime_dir"],
                                   nodes=nodes, last_state="RUNNING"))
    finally:
        registry.close()
    ran: list = []
    monkeypatch.setattr("launcher.cli.results.subprocess.call", lambda argv: ran.append(argv) or 0)
    return ran


@pytest.mark.parametrize("args, host, folder", [
    (("twin0001", "--node", "1"), "gpu-b", "/r-gpu-b/jobs/twin0001"),
    (("--node", "1", "twin0001"), "gpu-b", "/r-gpu-b/jobs/twin0001"),
    (("twin0001", "--node=1", "--", "ls"), "gpu-b", "/r-gpu-b/jobs/twin0001"),
    (("twin0001",), "gpu-a", "/r-gpu-a/jobs/twin0001"),
])
def test_ssh_opens_the_node_asked_for(tether, jobs, args, host, folder):
    r = tether("ssh", *args)
    assert r.exit_code == 0, r
    (argv,) = jobs
    line = " ".join(argv)
    assert host in line and folder in line and ("gpu-a" not in line or host == "gpu-a"), argv
    assert ("ls" in argv[-1]) == ("ls" in args), argv  # --node is tether's, the rest the command's


@pytest.mark.parametrize("args, error", [
    (("twin0001", "--node", "2"), "error: job twin0001 has nodes 0 to 1, not 2 — pick one of those with --node"),
    (("twin0001", "--node", "-1"), "error: job twin0001 has nodes 0 to 1, not -1 — pick one of those with --node"),
    (("twin0001", "--node", "x"), "error: --node 'x' is not a node number — e.g. --node 1"),
    (("twin0001", "--node"), "error: --node needs a node number — e.g. --node 1"),
    (("solo0001", "--node", "0"),
     "error: job solo0001 runs on one host: --node is for a multi-node job — tether ssh solo0001"),
])
def test_a_node_the_job_does_not_have_is_one_line(tether, jobs, args, error):
    r = tether("ssh", *args)
    assert r.exit_code == 2 and r.stderr.strip() == error and jobs == [], r
