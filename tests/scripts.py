"""Small workload scripts for tests: plain Python with the agent.progress helper."""

COUNTER = """
import json, os, sys, time
from agent import progress
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 5
pause = float(sys.argv[2]) if len(sys.argv) > 2 else 0.1
for step in range(steps):
    progress.report(step, loss=1.0 / (step + 1))
    print(f"step {step}", flush=True)
    if progress.stop_requested():
        open(os.path.join(progress.output_dir(), "stopped.txt"), "w").write(str(step))
        print("got SIGTERM, exiting", flush=True)
        sys.exit(0)
    time.sleep(pause)
out = progress.output_dir()
with open(os.path.join(out, "result.json"), "w") as f:
    json.dump({"steps": steps}, f)
print("done", flush=True)
"""

# Checkpoints as step-<n>/state.json: every `save_every` steps, when the agent asks (SIGUSR1)
# and on SIGTERM; resumes from TETHER_RESUME_FROM. argv: steps pause save_every [size_bytes]
RESUMABLE = """
import json, os, sys, time
from agent import progress
steps, pause = int(sys.argv[1]), float(sys.argv[2])
save_every = int(sys.argv[3]) if len(sys.argv) > 3 else 0
pad = int(sys.argv[4]) if len(sys.argv) > 4 else 0
start = 0
if progress.resume_path():
    with open(os.path.join(progress.resume_path(), "state.json")) as f:
        start = json.load(f)["step"] + 1
    print(f"resumed at {start}", flush=True)

def save(step):
    if pad:  # big checkpoints: keep only the newest, so the workload's own disk use is bounded
        import shutil
        for old in os.listdir(progress.checkpoint_dir()):
            shutil.rmtree(os.path.join(progress.checkpoint_dir(), old))
    d = os.path.join(progress.checkpoint_dir(), "step-%d" % step)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "state.json"), "w") as f:
        json.dump({"step": step}, f)
    if pad:
        with open(os.path.join(d, "weights.bin"), "wb") as f:
            f.write(os.urandom(pad))
    progress.report(step, checkpoint="step-%d" % step)

for step in range(start, steps):
    progress.report(step, loss=1.0 / (step + 1))
    print("step %d" % step, flush=True)
    if (save_every and (step + 1) % save_every == 0) or progress.checkpoint_requested():
        save(step)
    if progress.stop_requested():
        save(step)
        sys.exit(0)
    time.sleep(pause)
with open(os.path.join(progress.output_dir(), "result.json"), "w") as f:
    json.dump({"steps": steps, "attempt": progress.attempt()}, f)
"""

HANGS = """
import time
from agent import progress
def stuck_here():
    time.sleep(1000)
for step in range(3):
    progress.report(step, loss=1.0)
    time.sleep(0.05)
stuck_here()
"""
