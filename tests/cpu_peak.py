"""Measure the activation peak of one real forward/backward of an HF Llama on the CPU by
following every tensor storage the dispatcher hands out (a TorchDispatchMode, as torch's own
MemTracker does; MemTracker itself refuses frozen parameters, so LoRA needs this one, and a
test checks the two agree where both run). The peak minus the gradients alive at that moment
is what activations and the loss cost: parameters exist before and are not counted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Set

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Case:
    layers: int = 2
    hidden: int = 128
    intermediate: int = 344
    heads: int = 4
    kv_heads: int = 2
    vocab: int = 1000
    precision: str = "fp32"
    micro_batch: int = 2
    seq: int = 64
    checkpointing: bool = False
    lora_r: int = 0                 # 0: full fine-tuning
    lora_dropout: float = 0.05
    attn: str = "sdpa"

    def hf_config(self):
        from transformers import LlamaConfig

        return LlamaConfig(vocab_size=self.vocab, hidden_size=self.hidden, intermediate_size=self.intermediate,
                           num_hidden_layers=self.layers, num_attention_heads=self.heads,
                           num_key_value_heads=self.kv_heads, max_position_embeddings=max(128, self.seq),
                           attn_implementation=self.attn)

    def lora(self):
        from workloads.causal_lm.config import LoraOptions

        return LoraOptions(r=self.lora_r, alpha=2 * self.lora_r, dropout=self.lora_dropout) if self.lora_r else None


def build(case: Case):
    """The model as the workload trains it: in the compute dtype, LoRA applied, checkpointing on."""
    from transformers import AutoModelForCausalLM

    from workloads.causal_lm.loading import enable_checkpointing, with_lora

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(case.hf_config())
    model.config.use_cache = False
    if case.checkpointing:
        enable_checkpointing(model)
    if case.lora_r:
        model = with_lora(model, case.lora())
    model.train()
    return model.to(DTYPES[case.precision])   # DeepSpeed casts the whole module, adapters too


class StorageTracker(TorchDispatchMode):
    """Live bytes of the storages created while active, less those handed to `ignore`."""

    def __init__(self) -> None:
        super().__init__()
        self.live: Dict[StorageWeakRef, int] = {}
        self.ignored: Set[StorageWeakRef] = set()
        self.peak = 0

    def ignore(self, t: torch.Tensor) -> None:
        self.ignored.add(StorageWeakRef(t.untyped_storage()))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        # A view (of a parameter, say) shares an input's storage: only new storages count.
        inputs = {StorageWeakRef(t.untyped_storage()) for t in tree_flatten((args, kwargs))[0]
                  if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                ref = StorageWeakRef(t.untyped_storage())
                if ref not in inputs:
                    self.live.setdefault(ref, t.untyped_storage().nbytes())
        self.live = {r: n for r, n in self.live.items() if not r.expired()}
        self.peak = max(self.peak, sum(n for r, n in self.live.items() if r not in self.ignored))
        return out


def measure(case: Case, model: Optional[torch.nn.Module] = None) -> int:
    """Peak bytes of one step's forward and backward, run as the workload's loop runs it, less
    parameter gradients (model states, counted apart): once autograd stores a gradient in
    `.grad` it stops counting, so the peak is of activations, the loss and backward's
    short-lived tensors."""
    model = model if model is not None else build(case)
    ids = torch.randint(0, case.vocab, (case.micro_batch, case.seq), generator=torch.Generator().manual_seed(1))
    with StorageTracker() as tracker:
        hooks = [p.register_post_accumulate_grad_hook(lambda p: tracker.ignore(p.grad))
                 for p in model.parameters() if p.requires_grad]
        out = model(input_ids=ids, labels=ids, use_cache=False)
        loss = out.loss
        del out             # the loop drops the logits before backward
        loss.backward()
        del loss
    for h in hooks:
        h.remove()
    return tracker.peak


def measure_with_memtracker(case: Case) -> int:
    """The same number from torch's MemTracker (full fine-tuning only: it hooks every
    parameter's gradient, and a frozen one has none)."""
    from torch.distributed._tools.mem_tracker import MemTracker, _MemRefType

    model = build(case)
    ids = torch.randint(0, case.vocab, (case.micro_batch, case.seq), generator=torch.Generator().manual_seed(1))
    tracker = MemTracker()
    tracker.track_external(model)
    with tracker:
        out = model(input_ids=ids, labels=ids, use_cache=False)
        loss = out.loss
        del out
        loss.backward()
        del loss
    snap = tracker.get_tracker_snapshot("peak")[torch.device("cpu")]
    return snap["Total"] - sum(snap[k] for k in (_MemRefType.PARAM, _MemRefType.BUFFER, _MemRefType.GRAD))
