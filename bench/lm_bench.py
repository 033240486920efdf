"""Issue #4's benchmark: tokens/s of the causal-lm workload against a minimal hand-written
DeepSpeed loop (same model, data, ZeRO stage and batch), and what a checkpoint costs in steps.
MFU is reported by the workload itself when a GPU is present."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))

STEPS = int(os.environ.get("BENCH_LM_STEPS", "30"))
TRAIN = {"max_steps": STEPS, "micro_batch": 8, "grad_accum": 1, "lr": 0.001, "seq_len": 64, "save_every": 10}

MINIMAL = r"""
import json, os, sys, time, torch, deepspeed
from transformers import AutoModelForCausalLM, AutoTokenizer
os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="29561")
model_dir, data, steps, mb, seq = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(os.cpu_count())
tok = AutoTokenizer.from_pretrained(model_dir)
ids = []
for line in open(data):
    ids += tok(json.loads(line)["text"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
blocks = torch.tensor(ids[: len(ids) // seq * seq]).view(-1, seq)
torch.manual_seed(0)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
conf = {"train_micro_batch_size_per_gpu": mb, "gradient_accumulation_steps": 1, "gradient_clipping": 1.0,
        "zero_optimization": {"stage": 2}, "zero_allow_untested_optimizer": True, "steps_per_print": 10**9}
engine, _, _, _ = deepspeed.initialize(model=model, optimizer=opt, config=conf)
times = []
for step in range(steps):
    t0 = time.perf_counter()
    b = blocks[torch.randint(0, len(blocks), (mb,))]
    out = engine(input_ids=b, labels=b)
    engine.backward(out.loss)
    engine.step()
    float(out.loss.item())
    times.append(time.perf_counter() - t0)
print(json.dumps(times))
"""


def run_workload(tmp: Path, assets: Path) -> dict:
    import yaml

    work = tmp / "workload"
    work.mkdir()
    cfg = {"model": str(assets / "model"), "data": str(assets / "train.jsonl"), "deepspeed": {"zero_stage": 2},
           "train": TRAIN}
    (work / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env["PYTHONPATH"] = str(REPO)
    subprocess.run([sys.executable, "-m", "workloads.causal_lm", "--config", "cfg.yaml"], cwd=work, env=env,
                   check=True, capture_output=True)
    return json.loads((work / "outputs" / "training.json").read_text())


def run_minimal(tmp: Path, assets: Path) -> list:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", MINIMAL, str(assets / "model"), str(assets / "train.jsonl"),
                          str(STEPS), str(TRAIN["micro_batch"]), str(TRAIN["seq_len"])],
                         env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> list:
    from tiny_lm import make_data, make_model

    tmp = Path(tempfile.mkdtemp(prefix="tether-lm-bench-"))
    assets = tmp / "assets"
    make_model(assets / "model", layers=4, hidden=256)
    make_data(assets / "train.jsonl", n=2000)
    tokens = TRAIN["micro_batch"] * TRAIN["seq_len"]
    rows = []
    for _ in range(2):  # two rounds, alternating, to see the noise
        round_dir = tmp / f"round{len(rows)}"
        round_dir.mkdir()
        rec = run_workload(round_dir, assets)
        minimal = run_minimal(tmp, assets)
        steady_w = sorted(rec["step_times_s"][3:])
        steady_m = sorted(minimal[3:])
        rows.append({
            "workload_tps": tokens / statistics.median(steady_w),
            "minimal_tps": tokens / statistics.median(steady_m),
            "checkpoint_steps": statistics.mean(rec["checkpoint_times_s"]) / statistics.median(steady_w),
            "params": rec["parameters"],
        })
        print(f"  workload {rows[-1]['workload_tps']:.0f} tok/s, minimal loop {rows[-1]['minimal_tps']:.0f} tok/s, "
              f"checkpoint = {rows[-1]['checkpoint_steps']:.1f} steps", flush=True)
    ratio = statistics.median(r["workload_tps"] / r["minimal_tps"] for r in rows)
    lines = [
        "## The causal-lm workload against a minimal DeepSpeed loop (issue #4)",
        "",
        f"A {rows[0]['params'] / 1e6:.1f}M-parameter Llama (4 layers, hidden 256), ZeRO-2, fp32 on the CPU, "
        f"micro batch {TRAIN['micro_batch']} x {TRAIN['seq_len']} tokens, {STEPS} steps; medians of steady steps "
        "(the first 3 left out), two alternating rounds. The minimal loop is deepspeed.initialize plus "
        "forward/backward/step and nothing else (`MINIMAL` in bench/lm_bench.py).",
        "",
        "| round | workload tokens/s | minimal loop tokens/s | ratio | goal | one checkpoint costs |",
        "|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(rows, 1):
        lines.append(f"| {i} | {r['workload_tps']:.0f} | {r['minimal_tps']:.0f} | "
                     f"{r['workload_tps'] / r['minimal_tps']:.3f} | >= 0.97 | {r['checkpoint_steps']:.1f} steps |")
    lines += ["", f"Median ratio: {ratio:.3f}. MFU: printed in the workload's progress (`mfu`) when a GPU is "
              "present; none here.", ""]
    return lines


if __name__ == "__main__":
    print("\n".join(main()))
