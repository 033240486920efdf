"""`python -m workloads.causal_lm.plan`: what fits on 24 GB and 80 GB cards, from the memory
estimate alone (no GPU, no weights): the table in docs/causal-lm.md is this command's output.

    python -m workloads.causal_lm.plan [--seq-len 2048] [--micro-batch 1] [--gpus 1]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import List, Optional

from . import estimate as est
from .config import LoraOptions
from .memory import HEADROOM, estimate_for
from .shape import ModelShape, model_shape

MIB = 2 ** 20
CARDS = {"24 GB": 24564 * MIB, "80 GB": 81559 * MIB}   # what nvidia-smi reports for an RTX 4090, an H100

# Public configs of Llama models of each size (Llama 3.2 1B/3B, Llama 2 7B/13B).
MODELS = {
    "1B": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True),
    "3B": dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24,
               num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True),
    "7B": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=32, vocab_size=32000),
    "13B": dict(hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40,
                num_key_value_heads=40, vocab_size=32000),
}


@dataclass(frozen=True)
class Row:
    label: str
    lora: bool
    stage: int
    offload_optimizer: bool = False
    offload_param: bool = False
    checkpointing: bool = False


ROWS = [
    Row("full, ZeRO-2", False, 2),
    Row("full, ZeRO-2, checkpointing", False, 2, checkpointing=True),
    Row("full, ZeRO-2, optimizer offloaded, checkpointing", False, 2, True, checkpointing=True),
    Row("full, ZeRO-3, all offloaded, checkpointing", False, 3, True, True, True),
    Row("LoRA r16, ZeRO-2", True, 2),
    Row("LoRA r16, ZeRO-2, checkpointing", True, 2, checkpointing=True),
]


def shape(size: str, lora: bool) -> ModelShape:
    from transformers import LlamaConfig

    return model_shape(LlamaConfig(**MODELS[size]), LoraOptions(r=16, alpha=32) if lora else None)


def cell(row: Row, m: ModelShape, gpus: int, micro_batch: int, seq_len: int) -> str:
    setup = est.Setup(row.stage, "bf16", gpus, micro_batch, seq_len, row.offload_optimizer, row.offload_param,
                      row.checkpointing)
    fits = [card for card, cap in CARDS.items() if estimate_for(setup, m, cap).device_bytes * HEADROOM <= cap]
    e = estimate_for(setup, m, CARDS[fits[0]] if fits else None)
    mark = f"fits {fits[0]}" if fits else "fits neither"
    host = f", host {e.host_bytes / est.GIB:.0f}" if row.offload_optimizer else ""
    return f"{e.device_bytes / est.GIB:.1f}{host} ({mark})"


def table(gpus: int = 1, micro_batch: int = 1, seq_len: int = 2048) -> List[str]:
    sizes = list(MODELS)
    shapes = {(s, lora): shape(s, lora) for s in sizes for lora in (False, True)}
    lines = ["| setting (bf16, GiB per GPU) | " + " | ".join(f"{s} ({shapes[(s, False)].params / 1e9:.2f}B)"
                                                          for s in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    for row in ROWS:
        cells = [cell(row, shapes[(s, row.lora)], gpus, micro_batch, seq_len) for s in sizes]
        lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m workloads.causal_lm.plan")
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--micro-batch", type=int, default=1)
    ap.add_argument("--gpus", type=int, default=1)
    args = ap.parse_args(argv)
    print("\n".join(table(args.gpus, args.micro_batch, args.seq_len)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
