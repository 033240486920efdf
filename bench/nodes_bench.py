"""Issue #16's benchmark: the causal-lm step time on two nodes against one, on the CPU.

The same two processes and the same global batch either way: one node running both (torchrun
--nproc_per_node 2; DeepSpeed's shared-memory all-reduce) against two "nodes" of one process
each, two torchrun launches on this machine joined through torch's rendezvous on 127.0.0.1 as
the agent starts them (TETHER_NUM_NODES / TETHER_TORCHRUN_ARGS), gradients exchanged by gloo
over TCP. The ratio of median steady step times is what going through the network stack
costs (on real hosts the network, not loopback, sets it). Run alone: `python bench/nodes_bench.py`."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(HERE))

STEPS = int(os.environ.get("BENCH_NODES_STEPS", "30"))
TRAIN = {"max_steps": STEPS, "micro_batch": 8, "grad_accum": 1, "lr": 0.001, "seq_len": 64}
TITLE = "## Two nodes against one (issue #16)"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(node: int, nodes: int, port: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", PATH=f"{Path(sys.executable).parent}:{env['PATH']}")
    if nodes > 1:
        env.update(TETHER_NUM_NODES=str(nodes), TETHER_NODE_RANK=str(node),
                   TETHER_TORCHRUN_ARGS=f"--nnodes={nodes} --node_rank={node} --master_addr=127.0.0.1 "
                                        f"--master_port={port}")
    return env


def run(tmp: Path, assets: Path, nodes: int) -> list:
    """Steady step times (s) of rank 0: two processes on one node, or one on each of two."""
    cfg = {"model": str(assets / "model"), "data": str(assets / "data" / "train.jsonl"), "procs": 2 // nodes,
           "deepspeed": {"zero_stage": 2}, "train": TRAIN}
    port, procs = _port(), []
    for node in range(nodes):
        work = tmp / f"n{nodes}-{node}"
        work.mkdir(parents=True)
        (work / "cfg.json").write_text(json.dumps(cfg))
        procs.append(subprocess.Popen([sys.executable, "-m", "workloads.causal_lm", "--config", "cfg.json"],
                                      cwd=work, env=_env(node, nodes, port), stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate(timeout=1200)
        if p.returncode != 0:
            raise RuntimeError(f"{nodes}-node run failed: {err.decode()[-2000:]}")
    rec = json.loads((tmp / f"n{nodes}-0" / "outputs" / "training.json").read_text())
    return rec["step_times_s"][3:]


def main() -> list:
    from tiny_lm import make_data, make_model

    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        make_model(tmp / "assets" / "model", layers=4, hidden=256)
        make_data(tmp / "assets" / "data" / "train.jsonl", n=2000)
        for r in range(2):
            rows.append((statistics.median(run(tmp / f"round{r}", tmp / "assets", 1)),
                         statistics.median(run(tmp / f"round{r}", tmp / "assets", 2))))
    lines = [
        TITLE, "",
        f"The causal-lm workload, a 2.6M-parameter Llama (4 layers, hidden 256), ZeRO-2, fp32 on the CPU, two "
        f"processes with micro batch {TRAIN['micro_batch']} x {TRAIN['seq_len']} tokens each, {STEPS} steps; "
        "median of steady steps (the first 3 left out). One node: both processes under one torchrun. Two "
        "nodes: one process each, two torchrun launches joined by torch's rendezvous on 127.0.0.1, gloo over "
        "TCP, as tether's agents start them (bench/nodes_bench.py). Same global batch, same arithmetic.",
        "", "| round | 1 node step (s) | 2 nodes step (s) | ratio |", "|---|---|---|---|"]
    for k, (one, two) in enumerate(rows, 1):
        lines.append(f"| {k} | {one:.4f} | {two:.4f} | {two / one:.3f} |")
    ratio = statistics.median(two / one for one, two in rows)
    lines += ["", f"Median 2-node / 1-node step time: {ratio:.3f}: what the gradient exchange through the network "
              "stack costs over one node's shared memory, made visible (loopback here; a real network adds its "
              "latency and bandwidth). This machine is shared and noisy.", ""]
    return lines


if __name__ == "__main__":
    from results import splice

    out = main()
    splice(TITLE, out)
    print("\n".join(out))
