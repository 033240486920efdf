"""`make bench`: what the agent costs a training loop, and how fast it reacts.

1. Step time of a fixed-cost loop under the agent (backups every few seconds, copy and link
   modes) against the same script run bare, in the same run: mean and p99 ratios.
2. Reaction: kill -9 of the workload -> RESTARTING; a hang -> detected, against the
   configured stall_after_s + heartbeat.every_s.
Results go to bench/RESULTS.md.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from agent.hostops import create_job, start, status  # noqa: E402
from agent.paths import JobDir, Root  # noqa: E402

STEPS = int(os.environ.get("BENCH_STEPS", "400"))


def p99(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(0.99 * len(xs)))]


def bare(tmp: Path) -> list:
    times = tmp / "bare.json"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for k in [k for k in env if k.startswith("TETHER_")]:
        env.pop(k)
    subprocess.run([sys.executable, str(HERE / "step_workload.py"), "--steps", str(STEPS),
                    "--times", str(times)], check=True, env=env, cwd=tmp)
    return json.loads(times.read_text())


def job(tmp: Path, name: str, command: str, spec_extra: dict) -> JobDir:
    root = Root(tmp / name)
    code = root.code("bench")
    code.mkdir(parents=True)
    (code / "step_workload.py").write_text((HERE / "step_workload.py").read_text())
    spec = {"name": "bench", "heartbeat": {"every_s": 1}, **spec_extra}
    payload = {"spec": spec, "job": {"id": "b1", "project": "bench", "command": command,
                                     "path_prepend": [str(Path(sys.executable).parent)]}}
    return JobDir(create_job(root, "bench", "b1", payload)["job_dir"])


def wait_state(j: JobDir, states, timeout=600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = status(j)
        if st.get("state") in states:
            return st
        time.sleep(0.2)
    raise RuntimeError(f"{j.path} never reached {states}: {status(j)}")


def under_agent(tmp: Path, mode: str, every_s: float) -> list:
    times = tmp / f"agent-{mode}.json"
    j = job(tmp, f"agent-{mode}", f"python step_workload.py --steps {STEPS} --times {times}",
            {"backup": {"every_min": every_s / 60, "keep": 2, "mode": mode}})
    assert start(j)["started"]
    wait_state(j, {"SUCCEEDED", "FAILED"})
    events = [json.loads(x) for x in j.events.read_text().splitlines()]
    backups = sum(1 for e in events if e["event"] == "backup-done")
    return json.loads(times.read_text()), backups


def reaction_kill(tmp: Path) -> float:
    j = job(tmp, "kill", "sleep 1000", {"restart": {"max": 1, "on": ["infra"], "backoff_s": 5}})
    assert start(j)["started"]
    wait_state(j, {"RUNNING"})
    time.sleep(0.5)
    pid = json.loads(j.state.read_text())["workload_pgid"]
    t0 = time.time()
    os.kill(pid, signal.SIGKILL)
    wait_state(j, {"RESTARTING"})
    ev = [json.loads(x) for x in j.events.read_text().splitlines()]
    t1 = next(e["time"] for e in ev if e.get("state") == "RESTARTING")
    os.kill(json.loads(j.state.read_text())["agent_pid"], signal.SIGTERM)
    return t1 - t0


def reaction_hang(tmp: Path, stall_after: float, every: float) -> float:
    script = "import time; from agent import progress; progress.report(0, loss=1.0); time.sleep(1000)"
    j = job(tmp, "hang", f"python -c '{script}'",
            {"heartbeat": {"every_s": every, "stall_after_s": stall_after}, "restart": {"max": 0}})
    assert start(j)["started"]
    st = wait_state(j, {"FAILED"}, timeout=120)
    assert st["failure"] == "stall"
    ev = [json.loads(x) for x in j.events.read_text().splitlines()]
    started = next(e["time"] for e in ev if e["event"] == "child-started")
    stalled = next(e["time"] for e in ev if e["event"] == "stalled")
    # From the last progress line (written right after start) to the verdict.
    last = json.loads(j.progress.read_text().splitlines()[-1])["time"]
    return stalled - max(last, started)


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="tether-bench-"))
    print(f"bench: {STEPS} steps, scratch in {tmp}", flush=True)
    base = bare(tmp)
    rows = []
    for mode, every in (("link", 5.0), ("copy", 5.0)):
        times, n = under_agent(tmp, mode, every)
        rows.append((mode, every, n, statistics.mean(times) / statistics.mean(base), p99(times) / p99(base)))
        print(f"  agent {mode} every {every}s: {n} backups, mean x{rows[-1][3]:.3f}, p99 x{rows[-1][4]:.3f}",
              flush=True)
    base2 = bare(tmp)  # bare again: how noisy is this machine right now?
    noise = statistics.mean(base2) / statistics.mean(base)
    kills = [reaction_kill(tmp) for _ in range(3)]
    hang = reaction_hang(tmp, 3.0, 1.0)

    lines = [
        "# Benchmark results",
        "",
        f"Made by `make bench` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}. "
        "Ratios are against the same script run bare in the same run (the peer here); this machine is "
        "shared and noisy, so read them with the noise line.",
        "",
        "## Step time under the agent (issue #3)",
        "",
        f"Workload: {STEPS} fixed-cost steps (1-thread torch), a 64 MB checkpoint every 50 steps written by the "
        "script itself in both runs; under the agent, backups every 5 s, heartbeat every 1 s.",
        "",
        "| run | backups taken | mean step / bare | p99 step / bare | goal |",
        "|---|---|---|---|---|",
    ]
    for mode, every, n, mean_r, p99_r in rows:
        lines.append(f"| agent, backup mode {mode}, every {every:g} s | {n} | {mean_r:.3f} | {p99_r:.3f} | "
                     "mean <= 1.01, p99 <= 1.05 |")
    lines += [
        f"| bare again (noise) | - | {noise:.3f} | - | 1.00 |",
        "",
        "## Reaction times",
        "",
        "| what | measured | configured |",
        "|---|---|---|",
        f"| kill -9 of the workload -> RESTARTING | {statistics.mean(kills):.2f} s (mean of 3) | tick 0.2 s |",
        f"| hang (no progress) -> detected | {hang:.2f} s | stall_after_s 3 + heartbeat.every_s 1 = 4 s at most |",
        "",
    ]
    (HERE / "RESULTS.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
