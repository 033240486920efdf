"""One job on two hosts: two network namespaces with their own sshd and tether root
(tests/netns.py), real torchrun and DeepSpeed with gloo on the CPU."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from conftest import cannot_run_here, job_events, launched_id, status_json, wait_for, wait_state
from netns import sh, two_hosts, unavailable
from test_causal_lm import by_hand, config

from launcher.errors import ExitCode

pytestmark = pytest.mark.timeout(900)  # two DeepSpeed start-ups on a shared 2-core machine

TRAIN = {"max_steps": 12, "micro_batch": 4, "grad_accum": 2, "lr": 0.003, "seq_len": 32, "warmup": 2,
         "save_every": 4}


@pytest.fixture
def own_extensions(tmp_path, monkeypatch) -> Path:
    """DeepSpeed's CPU comm op is JIT-built under a lock file (torch's FileBaton): a test that
    kills its nodes while one holds it would leave every later run on this machine waiting
    for ever. Each test builds it in a folder of its own (a minute or two of compiling)."""
    dest = tmp_path / "torch_extensions"
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(dest))
    return dest


@pytest.fixture
def hosts(tmp_path, monkeypatch, tether_env, own_extensions):
    why = unavailable()
    if why:  # CI runs as root with iproute2 and nftables installed
        cannot_run_here(why)
    with two_hosts(tmp_path / "net") as net:
        net.extensions = own_extensions
        conf = tmp_path / "nodes_ssh_config"
        conf.write_text(net.ssh_config())
        monkeypatch.setenv("TETHER_SSH_CONFIG", str(conf))
        yield net


def lm_spec(net, assets: Path, train: dict, extra: str = "", backup_min: float = 10) -> str:
    return f"""
        name: lm2
        host: {{provider: ssh, nodes: 2, address: [node0, node1], root: {net.root}, python: {sys.executable},
                master_addr: {net.nodes[0].ip}, join_timeout_s: 60}}
        workload:
          kind: causal-lm
          model: {assets / 'model'}
          data: {assets / 'data' / 'train.jsonl'}
          procs: 1
          deepspeed: {{zero_stage: 2}}
          train: {json.dumps(train)}
        env: {{TORCH_EXTENSIONS_DIR: {net.extensions}}}
        heartbeat: {{every_s: 0.5, stall_after_s: 300}}
        backup: {{every_min: {backup_min}}}
        stop: {{grace_s: 30}}
        {extra}
    """


def losses(job_dir: Path) -> list:
    return json.loads((job_dir / "outputs" / "training.json").read_text())["losses"]


def test_two_node_zero2_trains_like_one_node_of_the_same_global_batch(hosts, tether, project, assets, tmp_path):
    """2 nodes x 1 process against 1 node x 2 processes: the same global batch (16 sequences a
    step) in the same order, so the losses agree to float32 rounding: 1e-4 relative."""
    reference = tmp_path / "reference"
    reference.mkdir()
    r = by_hand(reference, config(assets, procs=2, train=TRAIN))
    assert r.returncode == 0, r.stderr[-3000:]
    expected = json.loads((reference / "outputs" / "training.json").read_text())["losses"]

    launched = tether("launch", project(lm_spec(hosts, assets, TRAIN)))
    assert launched.exit_code == 0, launched
    job = launched_id(launched)
    done = wait_state(tether, job, ("SUCCEEDED", "FAILED"), timeout=400)
    assert done["state"] == "SUCCEEDED", (done, tether("logs", job, "--tail", "40").stdout)
    assert [n["state"] for n in done["nodes"]] == ["SUCCEEDED", "SUCCEEDED"]
    assert done["step"] == 12
    got = losses(hosts.job_dir(0, job))
    assert [s for s, _ in got] == [s for s, _ in expected]
    for (s, a), (_, b) in zip(expected, got):
        assert abs(a - b) <= 1e-4 * abs(a), (s, a, b)
    spec1 = json.loads((hosts.job_dir(1, job) / "spec.json").read_text())["job"]["node"]
    assert len(spec1.pop("token")) == 32
    assert spec1 == {"rank": 1, "count": 2, "master_addr": "10.77.0.1", "master_port": 29500, "join_timeout_s": 60,
                     "silence_s": 15}

    merged = tether("logs", job, "--tail", "200").stdout.splitlines()
    assert any(x.startswith("[node 0] ") for x in merged) and any(x.startswith("[node 1] ") for x in merged)
    one = tether("logs", job, "--node", "1", "--tail", "200").stdout
    assert one and "[node" not in one
    human = tether("status", job).stdout
    assert "node 0" in human and "node 1" in human and "10.77.0.2" in human


def test_a_blocked_master_port_fails_before_training_naming_it(hosts, tether, project, assets):
    hosts.block(0, 29500)  # node 0's firewall drops torch's port; tether's own (29501) is open
    job = launched_id(tether("launch", project(lm_spec(hosts, assets, TRAIN))))
    done = wait_state(tether, job, "FAILED", timeout=120)
    assert "node 1 cannot reach 10.77.0.1:29500" in done["reason"], done
    for k in (0, 1):
        assert not (hosts.job_dir(k, job) / "progress.jsonl").exists()  # no step was trained
    r = tether("status", job)
    assert "cannot reach 10.77.0.1:29500" in r.stdout


def test_a_killed_workload_on_node_1_restarts_both_from_the_newest_backup(hosts, tether, project, assets):
    # Long enough that node 1 backs up and is killed mid-run: unloaded, a step takes ~30 ms.
    train = {**TRAIN, "max_steps": 600, "save_every": 20}
    extra = "restart: {max: 2, backoff_s: 1}"
    job = launched_id(tether("launch", project(lm_spec(hosts, assets, train, extra, backup_min=0.1))))
    node1 = hosts.job_dir(1, job)

    def backed_up() -> bool:
        return any((b / "MANIFEST.json").exists() for b in (node1 / "backups").glob("*")) \
            if (node1 / "backups").is_dir() else False

    wait_for(backed_up, 300, what="a backup on node 1")
    pgid = json.loads((node1 / "state.json").read_text())["workload_pgid"]
    killed_at = time.time()
    os.killpg(pgid, signal.SIGKILL)
    done = wait_state(tether, job, ("SUCCEEDED", "FAILED"), timeout=400)
    assert done["state"] == "SUCCEEDED", (done, tether("logs", job, "--tail", "40").stdout)
    assert done["step"] == 600
    for k in (0, 1):
        events = [json.loads(x) for x in (hosts.job_dir(k, job) / "events.jsonl").read_text().splitlines()]
        settled = [e for e in events if e["event"] == "nodes-settled"]
        assert settled[0]["job"]["state"] == "FAILED" and "node 1" in settled[0]["job"]["reason"]
        assert settled[0]["time"] - killed_at < 60  # node 0 was not left waiting in a collective
        resumed = [e for e in events if e["event"] == "resume"]
        assert resumed and resumed[0]["step"] and resumed[0]["step"] >= 20, resumed
    log0 = tether("logs", job, "--node", "0", "--tail", "400").stdout
    assert "--- attempt 1" in log0 and "resumed from" in log0


TICKER = """
    import json, os, time
    for step in range(1, 1500):
        with open(os.environ["TETHER_PROGRESS_FILE"], "a") as f:
            f.write(json.dumps({"step": step}) + "\\n")
        time.sleep(0.2)
"""


def test_a_node_whose_host_vanishes_fails_the_job_within_seconds_naming_it(hosts, tether, project):
    """Node 1's network goes down: its connections are never closed, nothing is sent back.
    Before the agents' heartbeat node 0 ran on alone, then waited 300 s for node 1's outcome."""
    spec = project(f"""
        name: quiet
        host: {{provider: ssh, nodes: 2, address: [node0, node1], root: {hosts.root}, python: {sys.executable},
                master_addr: {hosts.nodes[0].ip}, join_timeout_s: 30}}
        run: python ticker.py
        heartbeat: {{every_s: 0.5, stall_after_s: 300}}
        restart: {{max: 0}}
    """, {"ticker.py": TICKER})
    job = launched_id(tether("launch", spec))
    for k in (0, 1):
        progress = hosts.job_dir(k, job) / "progress.jsonl"
        wait_for(lambda: progress.exists() and len(progress.read_text().splitlines()) >= 3, 120,
                 what=f"node {k} to train")
    sh("ip", "link", "set", "eth0", "down", ns=hosts.nodes[1].ns)
    gone = time.time()
    events = hosts.job_dir(0, job) / "events.jsonl"

    def settled():
        found = [json.loads(x) for x in events.read_text().splitlines() if '"nodes-settled"' in x]
        return found[0] if found else None

    verdict = wait_for(settled, 60, what="node 0 to give node 1 up")["job"]
    assert verdict["state"] == "FAILED" and verdict["failure"] == "infra", verdict
    assert verdict["reason"].startswith("node 1: its agent went silent: nothing heard from it for 15s"), verdict
    assert settled()["time"] - gone < 30  # 15 s of silence, then node 0's own workload stopped
    sh("ip", "link", "set", "eth0", "up", ns=hosts.nodes[1].ns)  # so that status reaches node 1 again
    done = wait_state(tether, job, "FAILED", timeout=120)
    assert done["reason"].startswith("node 1: its agent went silent"), done


SHARDS = """
    import json, os, time
    rank = os.environ["TETHER_NODE_RANK"]
    for step in range(1, 9):
        line = {"step": step}
        if step % 3 == 0:  # each node saves its own shard of the checkpoint, as ZeRO does
            folder = os.path.join(os.environ["TETHER_CHECKPOINT_DIR"], f"step-{step}")
            os.makedirs(folder)
            with open(os.path.join(folder, f"shard-{rank}.bin"), "w") as f:
                f.write(f"node {rank} step {step}")
            line["checkpoint"] = f"step-{step}"
        with open(os.environ["TETHER_PROGRESS_FILE"], "a") as f:
            f.write(json.dumps(line) + "\\n")
        time.sleep(1)
    with open(os.path.join(os.environ["TETHER_OUTPUT_DIR"], "who.txt"), "w") as f:
        f.write(f"node {rank}")
"""


def test_pull_and_backups_of_one_node_or_of_every_node(hosts, tether, project, tmp_path):
    spec = project(f"""
        name: shards
        host: {{provider: ssh, nodes: 2, address: [node0, node1], root: {hosts.root}, python: {sys.executable},
                master_addr: {hosts.nodes[0].ip}, join_timeout_s: 30}}
        run: python shards.py
        backup: {{every_min: 0.02}}
    """, {"shards.py": SHARDS})
    job = launched_id(tether("launch", spec))
    done = wait_state(tether, job, ("SUCCEEDED", "FAILED"), timeout=120)
    assert done["state"] == "SUCCEEDED", done

    listed = json.loads(tether("backups", job, "--node", "1", "--json").stdout)
    on_disk = sorted(p.name for p in (hosts.job_dir(1, job) / "backups").iterdir())
    assert sorted(b["name"] for b in listed) == on_disk and {b["step"] for b in listed} == {3, 6}, listed

    for args, who in ((("--node", "1"), "node 1"), ((), "node 0")):  # node 0 unless asked
        to = tmp_path / f"pulled{args}"
        assert tether("pull", job, *args, "--to", str(to)).exit_code == 0
        assert (to / "outputs" / "who.txt").read_text() == who
    to = tmp_path / "every"
    assert tether("pull", job, "--all-nodes", "--to", str(to)).exit_code == 0
    assert [(to / f"node-{k}" / "outputs" / "who.txt").read_text() for k in (0, 1)] == ["node 0", "node 1"]

    to = tmp_path / "shards"
    r = tether("pull", job, "--backup", "latest", "--all-nodes", "--to", str(to))
    assert r.exit_code == 0, r
    for k in (0, 1):
        (backup,) = (to / f"node-{k}" / "backups").iterdir()
        assert backup.name.endswith("-step6") and (backup / "MANIFEST.json").is_file()
        (shard,) = backup.rglob("shard-*.bin")
        assert shard.name == f"shard-{k}.bin" and shard.read_text() == f"node {k} step 6"
        assert f"node-{k}/backups/{backup.name}/MANIFEST.json" in r.stdout

    r = tether("pull", job, "--node", "2")
    assert r.exit_code == 2 and f"job {job} has nodes 0 to 1, not 2" in (r.stderr + r.stdout), r


def test_stop_and_resume_act_on_every_node(hosts, tether, project, assets):
    """Stop leaves every node STOPPED with its own shards of the final step; `tether resume`
    starts every node's agent again, both continue from the same step (not from scratch),
    and the job finishes on both."""
    train = {**TRAIN, "max_steps": 400}
    job = launched_id(tether("launch", project(lm_spec(hosts, assets, train))))
    wait_for(lambda: (status_json(tether, job).get("step") or 0) >= 2, 400, what="step 2")
    r = tether("stop", job)
    assert r.exit_code == 0, r
    st = status_json(tether, job)
    assert st["state"] == "STOPPED" and [n["state"] for n in st["nodes"]] == ["STOPPED", "STOPPED"], st
    for k in (0, 1):  # each node saved its own shards of the same final step
        assert any(hosts.job_dir(k, job).glob("checkpoints/step-*/*optim_states.pt"))
    r = tether("resume", job)
    assert r.exit_code == 0, r
    st = wait_state(tether, job, ("SUCCEEDED", "FAILED"), timeout=600)
    assert st["state"] == "SUCCEEDED" and [n["state"] for n in st["nodes"]] == ["SUCCEEDED", "SUCCEEDED"], st
    froms = [job_events(hosts.job_dir(k, job).parent.parent, job, "resume")[-1] for k in (0, 1)]
    assert froms[0].get("step") and froms[0].get("step") == froms[1].get("step"), froms
    assert st["step"] == 400


def test_rented_providers_refuse_several_nodes_before_renting(tether, project):
    spec = project("""
        name: big
        host: {provider: vast, nodes: 2, gpu: H100}
        run: python train.py
    """)
    r = tether("launch", spec)
    assert r.exit_code == ExitCode.BAD_SPEC, r
    lines = [x for x in r.stderr.splitlines() if x.strip()] or [x for x in r.stdout.splitlines() if x.strip()]
    assert "nodes: 2 cannot run on vast" in lines[0] and "reach each other" in lines[0]


def test_two_node_addresses_of_one_host_and_root_fail_cleanly(tether, project, host_root):
    """Two addresses that reach the same machine and root: each node locks on its own (never
    one node's lock held while another's is waited for), so the second finds the job there
    and the launch fails in one line, leaving no job folder and no record."""
    spec = project(f"""
        name: twice
        host: {{provider: ssh, nodes: 2, address: [testhost, testhost], root: {host_root}}}
        run: echo hi
    """)
    r = tether("launch", spec)
    assert r.exit_code != 0 and "already exists on this host" in r.stderr, r
    assert "no jobs" in tether("jobs").stdout
    assert not (host_root / "jobs").exists() or not any((host_root / "jobs").iterdir())


def test_a_dry_run_of_several_nodes_shows_node_0s_plan(tether, project, host_root):
    spec = project(f"""
        name: dry
        host: {{provider: ssh, nodes: 2, address: [testhost, testhost], root: {host_root}}}
        run: python train.py
    """, {"train.py": "print('hi')\n"})
    r = tether("launch", spec, "--dry-run")
    assert r.exit_code == 0, r
    assert "dry run: would send 2 file(s)" in r.stdout
    assert not (host_root / "jobs").exists()


@pytest.mark.parametrize("how", ["refuses", "breaks"])
def test_a_node_whose_agent_does_not_start_has_the_started_ones_stopped_at_once(hosts, tether, project,
                                                                                 monkeypatch, how):
    """Node 1's agent does not start (made so here: it refuses, or its start ends in an error,
    its answer lost, say): node 0's, already started, is stopped by the launch, not left
    waiting for node 1 until join_timeout_s; the job reads as ended."""
    from launcher.errors import RemoteError
    from launcher.transport.launch_session import LaunchSession

    net, real_create, real_start = hosts, LaunchSession.create, LaunchSession.start

    def create(self, job_id, payload, pushed):
        self.rank = payload.job.node["rank"]
        return real_create(self, job_id, payload, pushed)

    def start(self, secrets):
        if self.rank != 1:
            return real_start(self, secrets)
        if how == "refuses":
            return {"started": False, "why": "made to fail"}
        time.sleep(1.0)  # node 0's agent is up by then
        raise RemoteError("starting the agent failed on the host: made to break")

    monkeypatch.setattr(LaunchSession, "create", create)
    monkeypatch.setattr(LaunchSession, "start", start)
    spec = project(f"""
        name: half-{how}
        host: {{provider: ssh, nodes: 2, address: [node0, node1], root: {net.root}, python: {sys.executable},
                join_timeout_s: 300}}
        run: sleep 600
        heartbeat: {{every_s: 0.5}}
    """)
    r = tether("launch", spec)
    said = "the agent did not start on node 1" if how == "refuses" else "made to break"
    assert r.exit_code != 0 and said in r.stderr, r
    (job,) = [j["id"] for j in json.loads(tether("jobs", "--json").stdout) if j["name"] == f"half-{how}"]
    state = net.job_dir(0, job) / "state.json"
    wait_for(lambda: state.exists() and json.loads(state.read_text())["state"] == "STOPPED", 30,
             what="node 0's agent stopped")
    if how == "refuses":
        seen = status_json(tether, job)
        assert seen["state"] == "STOPPED" and [n["state"] for n in seen["nodes"]] == ["STOPPED", "STOPPED"], seen
        assert "the launch failed: node 1's agent did not start" in seen["reason"], seen