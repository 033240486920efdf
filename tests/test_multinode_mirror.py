"""Mirrors of a job on two hosts (network namespaces, tests/netns.py): every node's backups
follow the job off its hosts (to the laptop, or under node-K/ in an hf:// repo), and `tether
resume --on` carries the job to two new hosts, each node from its own backup of the newest
step that every node has. A small script stands in for training: the point is the mirror."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import cannot_run_here, job_events, launched_id, status_json, wait_for, wait_state
from fake_hub import FakeHub
from netns import BRIDGE_IP, two_hosts, unavailable

from agent.paths import backup_step
from launcher.errors import ExitCode
from launcher.registry import Registry

pytestmark = pytest.mark.timeout(300)

# Node K checkpoints its own shard every `every` steps and resumes only from its own: a node
# handed another node's backup fails (no shard-K.json in it).
NODE_TRAIN = """
import json, os, sys, time
rank = os.environ["TETHER_NODE_RANK"]
steps, pause, every = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
start = 1
if os.environ.get("TETHER_RESUME_FROM"):
    with open(os.path.join(os.environ["TETHER_RESUME_FROM"], f"shard-{rank}.json")) as f:
        start = json.load(f)["step"] + 1
    print(f"resumed at {start}", flush=True)
for step in range(start, steps + 1):
    line = {"step": step}
    if step % every == 0:
        folder = os.path.join(os.environ["TETHER_CHECKPOINT_DIR"], f"step-{step}")
        os.makedirs(folder)
        with open(os.path.join(folder, f"shard-{rank}.json"), "w") as f:
            json.dump({"step": step, "rank": rank}, f)
        line["checkpoint"] = f"step-{step}"
    with open(os.environ["TETHER_PROGRESS_FILE"], "a") as f:
        f.write(json.dumps(line) + "\\n")
    time.sleep(pause)
with open(os.path.join(os.environ["TETHER_OUTPUT_DIR"], "who.txt"), "w") as f:
    f.write(f"node {rank}")
"""


@pytest.fixture
def four_hosts(tmp_path, monkeypatch, tether_env):
    """node0 and node1 run the job first; node2 and node3 are the new hosts of a move."""
    why = unavailable()
    if why:  # CI runs as root with iproute2 installed
        cannot_run_here(why)
    with two_hosts(tmp_path / "net", count=4) as net:
        conf = tmp_path / "nodes_ssh_config"
        conf.write_text(net.ssh_config())
        monkeypatch.setenv("TETHER_SSH_CONFIG", str(conf))
        yield net


def spec_of(net, mirror: str, run: str, keep: int = 3) -> str:
    return f"""
        name: mirrored
        host: {{provider: ssh, nodes: 2, address: [node0, node1], root: {net.root}, python: {sys.executable},
                join_timeout_s: 30}}
        run: {run}
        heartbeat: {{every_s: 0.5}}
        backup: {{every_min: 0.02, keep: {keep}, mirror: "{mirror}"}}
        restart: {{max: 0}}
    """


def shard_of(folder) -> dict:
    (shard,) = folder.rglob("shard-*.json")
    return {"file": shard.name, **json.loads(shard.read_text())}


def test_laptop_mirror_of_two_nodes_then_resume_on_two_new_hosts(four_hosts, tether, project, tmp_path):
    net = four_hosts
    job = launched_id(tether("launch", project(spec_of(net, "laptop", "python node_train.py 80 0.25 4"),
                                               {"node_train.py": NODE_TRAIN})))
    mirrors = tmp_path / "tether-home" / "mirrors" / job

    def mirrored(k: int) -> dict:
        folder = mirrors / f"node-{k}" / "backups"
        found = [p for p in folder.iterdir() if (p / "MANIFEST.json").is_file()] if folder.is_dir() else []
        return {backup_step(p.name): p for p in found}

    def two_common_steps():
        status_json(tether, job)  # every tether command brings each node's new backups along
        common = set(mirrored(0)) & set(mirrored(1))
        return sorted(common) if len(common) >= 2 else None

    common = wait_for(two_common_steps, 120, what="two steps mirrored from both nodes")
    r = tether("resume", job, "--on", "node2,node3")  # both nodes still run it: two copies would train
    assert r.exit_code == ExitCode.BAD_SPEC and f"job {job} still runs on root@10.77.0." in r.stderr, r
    net.vanish(0)  # both hosts are gone, mid-run
    net.vanish(1)
    for k in (0, 1):  # each node's own shards came to its own folder
        for step, folder in mirrored(k).items():
            assert shard_of(folder) == {"file": f"shard-{k}.json", "step": step, "rank": str(k)}
    # Node 1's copy of the newest common step is lost: that step is no longer every node's.
    newest = max(set(mirrored(0)) & set(mirrored(1)))
    (mirrored(1)[newest] / "MANIFEST.json").unlink()
    expected = max(set(mirrored(0)) & set(mirrored(1)))
    assert expected in common and expected < newest

    r = tether("resume", job, "--on", "node2")
    assert r.exit_code == ExitCode.BAD_SPEC and "runs on 2 nodes: --on needs 2 addresses" in r.stderr, r
    r = tether("resume", job, "--on", "node2,node3")
    assert r.exit_code == 0, r
    assert f"every node has step {expected} mirrored to this laptop" in r.stdout, r.stdout
    for k in (0, 1):
        assert f"node {k}: brought backup {mirrored(k)[expected].name} (step {expected})" in r.stdout, r.stdout
    # The spec the job is recorded with (the dashboard shows it; a second move starts from it)
    # names the new hosts, and node 0's new address as the master.
    registry = Registry(tmp_path / "tether-home" / "jobs.db")
    host = registry.resolve(job).spec["host"]
    registry.close()
    assert host["address"] == ["node2", "node3"] and host["master_addr"] is None, host

    done = wait_state(tether, job, ("SUCCEEDED", "FAILED"), timeout=120)
    assert done["state"] == "SUCCEEDED", (done, tether("logs", job, "--tail", "20").stdout)
    assert done["step"] == 80 and done["host"].startswith("2 nodes: root@10.77.0.3"), done
    for k, host in ((0, 2), (1, 3)):
        assert (net.job_dir(host, job) / "logs" / "workload.log").read_text().startswith(f"resumed at {expected + 1}")
        assert (net.job_dir(host, job) / "outputs" / "who.txt").read_text() == f"node {k}"
        assert job_events(net.nodes[host].root_dir, job, "resume")[0]["step"] == expected


def test_hub_mirror_of_two_nodes_keeps_each_nodes_backups_under_its_own_folder(four_hosts, tether, project,
                                                                            monkeypatch):
    net = four_hosts
    hub = FakeHub(host=BRIDGE_IP)  # where the namespaces reach this machine
    try:
        for k, v in {"HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", "HF_TOKEN": hub.token}.items():
            monkeypatch.setenv(k, v)
        repo = "tester/two-nodes"
        job = launched_id(tether("launch", project(spec_of(net, f"hf://{repo}", "python node_train.py 40 0.25 2", keep=2),
                                                   {"node_train.py": NODE_TRAIN})))
        done = wait_state(tether, job, ("SUCCEEDED", "FAILED"), timeout=120)
        assert done["state"] == "SUCCEEDED", done

        assert not hub.backups(repo)  # nothing at the top level: a one-host job's place
        for k in (0, 1):
            on_hub = hub.backups(repo, f"node-{k}/")
            pushed = job_events(net.nodes[k].root_dir, job, "mirror-pushed")
            assert 1 <= len(on_hub) <= 2 and pushed[-1]["name"] in on_hub, (len(pushed), on_hub)
            assert any(e["pruned"] for e in pushed), pushed  # more than keep were pushed: node K pruned its own
            for name, manifest in on_hub.items():
                (shard,) = [p for p in hub.repos[repo].files if p.startswith(f"node-{k}/{name}/data/")]
                assert shard.endswith(f"/shard-{k}.json") and json.loads(hub.repos[repo].files[shard])["rank"] == str(k)
            assert hub.repos[repo].files[f"node-{k}/outputs/who.txt"] == f"node {k}".encode()

        net.vanish(0)
        net.vanish(1)
        last = max(backup_step(n) for n in hub.backups(repo, "node-1/"))
        r = tether("resume", job, "--on", "node2,node3")
        assert r.exit_code == 0, r
        assert f"every node has step {last} in hf://{repo}" in r.stdout, r.stdout
        for k in (0, 1):
            assert f"node {k}: the new host fetched backup" in r.stdout and f"from hf://{repo}/node-{k}/" in r.stdout
        done = wait_state(tether, job, ("SUCCEEDED", "FAILED"), timeout=120)
        assert done["state"] == "SUCCEEDED" and done["step"] == 40, done
        for k, host in ((0, 2), (1, 3)):
            assert job_events(net.nodes[host].root_dir, job, "resume")[0]["step"] == last
    finally:
        hub.stop()
