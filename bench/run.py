"""`make bench`: what the agent costs a training loop, and how fast it reacts.

1. Step time of a fixed-cost loop under the agent (backups every few seconds, copy and link
   modes) against the same script run bare, in the same run: mean and p99 ratios.
2. Reaction: kill -9 of the workload -> RESTARTING; a hang -> detected, against the
   configured stall_after_s + heartbeat.every_s.
3. The causal-lm workload against a minimal DeepSpeed loop (lm_bench.py).
4. Code sync: the rsync path, the tar stream and a bare rsync (sync_bench.py).
5. The causal-lm memory estimate against measured CPU peaks (memory_bench.py).
6. The dashboard: 200 jobs over 5 hosts, a job of a million progress lines (ui_bench.py).
7. Where users wait: status, jobs, launch, pull and logs -f against OpenSSH and rsync
   (speed_bench.py).
8. Two nodes against one: the causal-lm step time (nodes_bench.py).
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
sys.path.insert(0, str(HERE))

from agent.hostops import create_job, start  # noqa: E402
from agent.job_status import status  # noqa: E402
from agent.paths import JobDir, Root  # noqa: E402

STEPS = int(os.environ.get("BENCH_STEPS", "600"))
EVERY_S = 3.0
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


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
    root = Root(tempfile.mkdtemp(dir=tmp, prefix=f"{name}-"))
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
    hb = json.loads(j.heartbeat.read_text())
    return json.loads(times.read_text()), backups, hb["agent_cpu_s"] / hb["uptime_s"]


def reaction_kill(tmp: Path, i: int) -> float:
    j = job(tmp, f"kill{i}", "sleep 1000", {"restart": {"max": 1, "on": ["infra"], "backoff_s": 5}})
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
    # Rounds of bare, agent(link), agent(copy), in turn: each ratio is against the bare run of
    # its own round, and the median over rounds is reported. The spread of the bare runs is
    # the noise floor of this shared machine at this time.
    ratios = {"link": [], "copy": []}
    backups = {"link": 0, "copy": 0}
    cpu = {"link": [], "copy": []}
    bare_means = []
    for _ in range(ROUNDS):
        base = bare(tmp)
        bare_means.append(statistics.mean(base))
        for mode in ("link", "copy"):
            times, n, agent_cpu = under_agent(tmp, mode, EVERY_S)
            ratios[mode].append((statistics.mean(times) / statistics.mean(base), p99(times) / p99(base)))
            backups[mode] += n
            cpu[mode].append(agent_cpu)
            print(f"  agent {mode}: {n} backups, mean x{ratios[mode][-1][0]:.3f}, p99 x{ratios[mode][-1][1]:.3f}, "
                  f"agent CPU {100 * agent_cpu:.2f}%", flush=True)
    noise = (max(bare_means) - min(bare_means)) / statistics.mean(bare_means)
    rows = [(mode, EVERY_S, backups[mode], statistics.median(r[0] for r in ratios[mode]),
             statistics.median(r[1] for r in ratios[mode]), statistics.median(cpu[mode])) for mode in ratios]
    kills = [reaction_kill(tmp, i) for i in range(3)]
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
        f"script itself in every run; under the agent, backups every {EVERY_S:g} s, heartbeat every 1 s. Each "
        "round runs bare, then under the agent in link and copy mode; each ratio is against its round's bare "
        "run. Ratios below 1 are noise (the bare run goes first in its round), not a speed-up.",
        "",
        f"| run ({ROUNDS} rounds, medians) | backups taken | mean step / bare | p99 step / bare | agent CPU | goal |",
        "|---|---|---|---|---|---|",
    ]
    for mode, every, n, mean_r, p99_r, agent_cpu in rows:
        lines.append(f"| agent, backup mode {mode}, every {every:g} s | {n} | {mean_r:.3f} | {p99_r:.3f} | "
                     f"{100 * agent_cpu:.2f}% of a core | mean <= 1.01, p99 <= 1.05 |")
    lines += [
        "",
        f"Noise: the bare runs' mean step times spread by {100 * noise:.1f}% across rounds. A ratio closer to 1 "
        "than that spread cannot be told from 1; the agent's own CPU time (from its heartbeat) is the "
        "noise-free measure of what supervising costs.",
        "",
        "## Reaction times",
        "",
        "| what | measured | configured |",
        "|---|---|---|",
        f"| kill -9 of the workload -> RESTARTING | {statistics.mean(kills):.2f} s (mean of 3) | tick 0.2 s |",
        f"| hang (no progress) -> detected | {hang:.2f} s | stall_after_s 3 + heartbeat.every_s 1 = 4 s at most |",
        "",
    ]
    if os.environ.get("BENCH_SKIP_LM") != "1":
        import lm_bench
        lines += lm_bench.main()
    if os.environ.get("BENCH_SKIP_SYNC") != "1":
        import sync_bench
        lines += sync_bench.main()
    if os.environ.get("BENCH_SKIP_SPEED") != "1":
        import speed_bench
        lines += speed_bench.main()
    if os.environ.get("BENCH_SKIP_MEMORY") != "1":
        import memory_bench
        lines += memory_bench.main()
    if os.environ.get("BENCH_SKIP_NODES") != "1":
        import nodes_bench
        lines += nodes_bench.main()
    if os.environ.get("BENCH_SKIP_UI") != "1":
        import ui_bench
        lines += ui_bench.main()
    (HERE / "RESULTS.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
