"""Text in (.jsonl with a text field, .txt lines, or a saved HF dataset folder), packed into
seq_len blocks, read in a seeded order whose position is one integer (exact resume)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Dict, List

import torch

from .config import ConfigError


def read_texts(path: str, text_field: str) -> List[str]:
    if not os.path.exists(path):
        raise ConfigError(f"workload.data: {path} does not exist (paths are relative to the job's code folder)")
    if os.path.isdir(path):
        texts = _dataset_dir(path, text_field)
    elif path.endswith(".jsonl"):
        texts = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    raise ConfigError(f"workload.data: {path} line {n} is not JSON") from None
                if not isinstance(rec, dict) or text_field not in rec:
                    raise ConfigError(f"workload.data: {path} line {n} has no {text_field!r} field "
                                      "(set workload.text_field)")
                texts.append(str(rec[text_field]))
    else:
        with open(path, encoding="utf-8") as f:
            texts = [line.rstrip("\n") for line in f if line.strip()]
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise ConfigError(f"workload.data: {path} has no text")
    return texts


def _dataset_dir(path: str, text_field: str) -> List[str]:
    try:
        import datasets  # optional: only for saved dataset folders
    except ImportError:
        raise ConfigError(f"workload.data: {path} is a folder; reading a saved Hugging Face dataset needs "
                          "the `datasets` package (pip install datasets)") from None
    try:
        ds = datasets.load_from_disk(path)
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(f"workload.data: {path} is not a saved dataset ({exc})") from None
    if isinstance(ds, datasets.DatasetDict):
        ds = ds["train"] if "train" in ds else ds[next(iter(ds))]
    if text_field not in ds.column_names:
        raise ConfigError(f"workload.data: dataset {path} has no column {text_field!r} "
                          f"(it has {', '.join(ds.column_names)})")
    return [str(t) for t in ds[text_field]]


@dataclass
class Packed:
    train: torch.Tensor   # (blocks, seq_len) token ids
    eval: torch.Tensor    # held-out blocks (may be empty)
    tokens: int


def pack(texts: List[str], tokenizer, seq_len: int, hold_out_eval: bool, source: str) -> Packed:
    eos = tokenizer.eos_token_id
    ids: List[int] = []
    for text in texts:
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        if eos is not None:
            ids.append(eos)
    n_blocks = len(ids) // seq_len
    if n_blocks < 1:
        raise ConfigError(f"workload.data: {source} has {len(ids)} tokens, fewer than train.seq_len={seq_len}")
    blocks = torch.tensor(ids[: n_blocks * seq_len], dtype=torch.long).view(n_blocks, seq_len)
    n_eval = max(1, n_blocks // 20) if hold_out_eval and n_blocks >= 2 else 0
    return Packed(train=blocks[: n_blocks - n_eval], eval=blocks[n_blocks - n_eval:], tokens=len(ids))


class BlockOrder:
    """Sample g of the whole run -> a block index: a fresh seeded permutation per epoch."""

    def __init__(self, n_blocks: int, seed: int) -> None:
        self.n, self.seed = n_blocks, seed
        self._perms: Dict[int, torch.Tensor] = {}

    def block(self, g: int) -> int:
        epoch, i = divmod(g, self.n)
        if epoch not in self._perms:
            self._perms = {epoch: torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + epoch))}
        return int(self._perms[epoch][i])


def micro_batch(data: Packed, order: BlockOrder, micro_step: int, rank: int, world: int, size: int) -> torch.Tensor:
    """The rows rank reads at micro_step: every rank a disjoint slice, the same for any resume."""
    first = (micro_step * world + rank) * size
    return data.train[[order.block(first + i) for i in range(size)]]
