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
