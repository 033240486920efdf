"""Benchmark workload: fixed-cost training steps (a 1-thread torch matmul chain), a checkpoint
every --save-every steps (written by the script itself, the same bare or under the agent),
step times written to --times."""

import argparse
import json
import os
import time
import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402

from agent import progress  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--steps", type=int, default=300)
ap.add_argument("--save-every", type=int, default=50)
ap.add_argument("--ckpt-mb", type=int, default=64)
ap.add_argument("--times", required=True)
args = ap.parse_args()
torch.set_num_threads(1)
torch.manual_seed(0)
w = torch.randn(384, 384)
state = torch.randn(args.ckpt_mb * 1024 * 1024 // 4)
ckpt_root = os.environ.get("TETHER_CHECKPOINT_DIR") or os.path.join(os.path.dirname(args.times), "ckpt")
times = []
for step in range(args.steps):
    t0 = time.perf_counter()
    x = w
    for _ in range(12):
        x = torch.tanh(x @ w)
    times.append(time.perf_counter() - t0)
    progress.report(step, loss=float(x.mean()))
    if (step + 1) % args.save_every == 0:
        d = os.path.join(ckpt_root, f"step-{step}")
        os.makedirs(d, exist_ok=True)
        torch.save({"w": w, "state": state}, os.path.join(d, "ckpt.pt"))
        progress.report(step, checkpoint=f"step-{step}")
with open(args.times, "w") as f:
    json.dump(times, f)
