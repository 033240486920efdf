"""A tiny training loop that follows tether's workload contract with three added lines:
report progress, announce checkpoints, resume from one. It runs by hand too."""

import argparse
import json
import os
import time

import torch

from agent import progress

ap = argparse.ArgumentParser()
ap.add_argument("--steps", type=int, default=60)
ap.add_argument("--save-every", type=int, default=20)
args = ap.parse_args()

torch.manual_seed(int(os.environ.get("DEMO_SEED", "0")))
# Learn y = 3x - 2 from noisy samples.
x = torch.randn(512, 1)
y = 3 * x - 2 + 0.1 * torch.randn(512, 1)
model = torch.nn.Linear(1, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.05)

start = 0
if progress.resume_path():  # set by the agent after a restart
    state = torch.load(os.path.join(progress.resume_path(), "state.pt"))
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    start = state["step"] + 1
    print(f"resumed from step {state['step']}")

for step in range(start, args.steps):
    loss = torch.nn.functional.mse_loss(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    progress.report(step, loss=round(loss.item(), 5), max_steps=args.steps)
    print(f"step {step:3d}  loss {loss.item():.5f}", flush=True)
    if (step + 1) % args.save_every == 0 or progress.checkpoint_requested():
        name = f"step-{step}"
        os.makedirs(os.path.join(progress.checkpoint_dir(), name), exist_ok=True)
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step},
                   os.path.join(progress.checkpoint_dir(), name, "state.pt"))
        progress.report(step, checkpoint=name)
    if progress.stop_requested():
        print("stop requested: checkpointed, exiting")
        break
    time.sleep(0.05)

out = progress.output_dir()
torch.save(model.state_dict(), os.path.join(out, "model.pt"))
w, b = model.weight.item(), model.bias.item()
with open(os.path.join(out, "metrics.json"), "w") as f:
    json.dump({"final_loss": round(loss.item(), 5), "weight": round(w, 3), "bias": round(b, 3),
               "steps": args.steps}, f)
print(f"learned y = {w:.2f}x + {b:.2f}")
