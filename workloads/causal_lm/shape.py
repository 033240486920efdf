"""What the memory estimate needs to know about a model, read from a copy built on the meta
device (no weights are allocated): parameter counts, the largest parameter, the layer sizes
that set activation memory, and, with LoRA, which modules get adapters and how many
parameters train."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from .config import LoraOptions

# Decoder blocks laid out as in HF Llama (pre-norm RMSNorm, rotary q/k/v/o attention, gated
# MLP): the activation terms are derived from that code and measured against it. Others get
# the same formula as an approximation, marked as such in the breakdown.
LLAMA_LIKE = {"llama", "mistral", "qwen2", "qwen3", "granite", "olmo2", "smollm3"}


@dataclass(frozen=True)
class ModelShape:
    params: int               # all parameters (tied weights once)
    largest: int              # the largest single parameter
    trainable: int            # params, or the LoRA adapters' parameters
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_dim: int               # key/value width: kv heads x head dim
    vocab: int
    model_type: str
    attn: str                 # sdpa | eager | flash_attention_2
    gated_mlp: bool = True
    lora_rank: int = 0
    lora_dropout: float = 0.0
    lora_modules: Tuple[str, ...] = ()   # short names of the adapted modules in one block

    @property
    def frozen(self) -> int:
        return self.params - self.trainable

    @property
    def llama_like(self) -> bool:
        return self.model_type in LLAMA_LIKE


def _first(hf_config, *names: str, default: int = 0) -> int:
    for name in names:
        value = getattr(hf_config, name, None)
        if value:
            return int(value)
    return default


def _meta_model(hf_config):
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(hf_config)


def _with_lora(model, lora: LoraOptions):
    from .loading import with_lora
    return with_lora(model, lora)


def _counts(model) -> Tuple[int, int, int]:
    """(total, largest, trainable), each shared (tied) parameter counted once."""
    seen = {}
    for p in model.parameters():
        seen.setdefault(id(p), p)
    sizes = [p.numel() for p in seen.values()]
    trainable = sum(p.numel() for p in seen.values() if p.requires_grad)
    return sum(sizes), max(sizes), trainable


def _adapted_modules(model) -> Tuple[str, ...]:
    names = []
    for name, module in model.named_modules():
        if hasattr(module, "lora_A") and ".layers.0." in f".{name}.":
            names.append(name.rsplit(".", 1)[-1])
    return tuple(names)


def model_shape(hf_config, lora: Optional[LoraOptions] = None) -> ModelShape:
    """The shape of `hf_config`'s model (and of its LoRA adapters, if any)."""
    model = _meta_model(hf_config)
    attn = getattr(model.config, "_attn_implementation", None) or "sdpa"
    if lora is not None:
        model = _with_lora(model, lora)
    total, largest, trainable = _counts(model)
    hidden = _first(hf_config, "hidden_size", "n_embd", "d_model")
    heads = _first(hf_config, "num_attention_heads", "n_head", default=1)
    head_dim = _first(hf_config, "head_dim", default=hidden // max(1, heads))
    kv_heads = _first(hf_config, "num_key_value_heads", default=heads)
    inter = _first(hf_config, "intermediate_size", "n_inner", "ffn_dim", default=4 * hidden)
    mtype = getattr(hf_config, "model_type", "") or ""
    return ModelShape(
        params=total, largest=largest, trainable=trainable,
        layers=_first(hf_config, "num_hidden_layers", "n_layer", "num_layers"), hidden=hidden,
        intermediate=inter, heads=heads,
        kv_dim=kv_heads * head_dim, vocab=_first(hf_config, "vocab_size"), model_type=mtype, attn=attn,
        gated_mlp=any(n.endswith(("gate_proj", "gate_up_proj", ".w1")) for n, _ in model.named_modules()),
        lora_rank=lora.r if lora else 0, lora_dropout=lora.dropout if lora else 0.0,
        lora_modules=_adapted_modules(model) if lora else ())
