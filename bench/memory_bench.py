"""Issue #17's benchmark: the memory estimate's activation and logits terms against the peak
of a real forward/backward of HF Llama models measured on the CPU (tests/cpu_peak.py), over a
grid of sizes, precisions, micro batches, gradient checkpointing, LoRA and attention kernels,
as ratios (estimate / measured). Model states are checked against DeepSpeed's own estimators
in tests/test_memory_fit.py; a GPU's own numbers come from the workload's progress lines.

    python bench/memory_bench.py      # rewrites only its own section of bench/RESULTS.md
"""

from __future__ import annotations

import itertools
import statistics
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

TITLE = "## Memory estimate against measured CPU peaks (issue #17)"
SIZES = {
    "tiny (2 x 128, V 1k)": dict(layers=2, hidden=128, intermediate=344, heads=4, kv_heads=2, vocab=1000, seq=64),
    "small (4 x 256, V 4k)": dict(layers=4, hidden=256, intermediate=688, heads=8, kv_heads=4, vocab=4000, seq=128),
    "medium (4 x 512, V 8k)": dict(layers=4, hidden=512, intermediate=1376, heads=8, kv_heads=2, vocab=8000,
                                   seq=256),
}


def ratio(case) -> float:
    from cpu_peak import measure

    from workloads.causal_lm import activations as act
    from workloads.causal_lm.shape import model_shape

    p = 4 if case.precision == "fp32" else 2
    peak = act.peak(model_shape(case.hf_config(), case.lora()), p, case.micro_batch, case.seq,
                    case.checkpointing, act.cpu_kernels(p))
    return (peak.activations + peak.logits) / measure(case)


def grid():
    from cpu_peak import Case

    for (size, dims), prec, mb, ckpt, lora, attn in itertools.product(
            SIZES.items(), ("fp32", "bf16"), (1, 4), (False, True), (0, 8), ("sdpa", "eager")):
        yield size, replace(Case(**dims), precision=prec, micro_batch=mb, checkpointing=ckpt, lora_r=lora, attn=attn)


def _row(name: str, values) -> str:
    v = list(values)
    return f"| {name} | {len(v)} | {statistics.median(v):.3f} | {min(v):.3f} | {max(v):.3f} |"


def main() -> list:
    warnings.filterwarnings("ignore")
    started = time.time()
    results = [(size, case, ratio(case)) for size, case in grid()]
    all_r = [r for _, _, r in results]
    lines = [TITLE, "",
             f"{len(results)} cases: three Llama shapes (layers x hidden, vocabulary) x fp32/bf16 x micro batch 1/4 "
             "x gradient checkpointing off/on x full/LoRA r8 (dropout 0.05, all linear layers) x sdpa/eager "
             "attention. Measured: the peak bytes of one forward and backward as the workload runs it (logits "
             "dropped before backward), every storage followed through torch's dispatcher, less parameters and "
             "their gradients. Estimate: activations + logits from workloads/causal_lm/activations.py, with the "
             "CPU's dropout kernel (it keeps a noise tensor where CUDA keeps a bool mask). Ratio = estimate / "
             f"measured; the stated tolerance is 0.93-1.10. Took {time.time() - started:.0f} s.", "",
             "| cases | n | median ratio | min | max |", "|---|---|---|---|---|", _row("all", all_r)]
    for label, keep in (("fp32", lambda c: c.precision == "fp32"), ("bf16", lambda c: c.precision == "bf16"),
                        ("gradient checkpointing", lambda c: c.checkpointing),
                        ("no checkpointing", lambda c: not c.checkpointing), ("LoRA", lambda c: c.lora_r),
                        ("full fine-tuning", lambda c: not c.lora_r), ("eager attention", lambda c: c.attn == "eager")):
        lines.append(_row(label, (r for _, c, r in results if keep(c))))
    for size in SIZES:
        lines.append(_row(size, (r for s, _, r in results if s == size)))
    worst = sorted(results, key=lambda x: abs(x[2] - 1))[-3:]
    lines += ["", "Farthest from 1: " + "; ".join(
        f"{s.split(' ')[0]} {c.precision} mb {c.micro_batch}{' ckpt' if c.checkpointing else ''}"
        f"{' lora' if c.lora_r else ''} {c.attn}: {r:.3f}" for s, c, r in worst) + ".", ""]
    return lines


def write_section(lines: list) -> None:
    """Replace this benchmark's section of RESULTS.md (or append it), leaving the others."""
    path = HERE / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    head, sep, rest = text.partition(TITLE)
    tail = ""
    if sep:
        nxt = rest.find("\n## ")
        tail = rest[nxt + 1:] if nxt >= 0 else ""
    body = "\n".join(lines)
    path.write_text(head.rstrip("\n") + "\n\n" + body + ("\n" + tail if tail else ""))


if __name__ == "__main__":
    out = main()
    write_section(out)
    print("\n".join(out))
