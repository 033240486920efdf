"""Model, tokenizer and LoRA loading: hub ids and local paths, with one-line errors."""

from __future__ import annotations

import os
from typing import Optional, Tuple

from .config import CausalLMConfig, ConfigError, LoraOptions


def _looks_local(name: str) -> bool:
    return os.path.isabs(name) or name.startswith((".", "~")) or os.path.exists(name)


def model_config(cfg: CausalLMConfig):
    from transformers import AutoConfig

    name = cfg.model
    if _looks_local(name):
        path = os.path.expanduser(name)
        if not os.path.isdir(path):
            raise ConfigError(f"workload.model: {name} does not exist")
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise ConfigError(f"workload.model: {name} has no config.json (is it a saved Hugging Face model?)")
    try:
        return AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"workload.model: cannot load {name!r}: {str(exc).splitlines()[0]}") from None


def tokenizer(cfg: CausalLMConfig):
    from transformers import AutoTokenizer

    name = cfg.tokenizer or cfg.model
    try:
        tok = AutoTokenizer.from_pretrained(os.path.expanduser(name) if _looks_local(name) else name)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"workload.tokenizer: cannot load {name!r}: {str(exc).splitlines()[0]}") from None
    return tok


def with_lora(model, opts: LoraOptions):
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ConfigError("workload.lora: needs the `peft` package on the host (pip install peft)") from None
    conf = LoraConfig(r=opts.r, lora_alpha=opts.alpha, lora_dropout=opts.dropout,
                      target_modules=opts.target_modules or "all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, conf)


DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def model(cfg: CausalLMConfig, hf_config, ds_conf: dict, prec: str):
    """The model as it trains. Loaded in the training dtype (half the host RAM of fp32 per
    rank; DeepSpeed would cast it anyway). ZeRO-3 builds it partitioned (zero.Init, through
    HfDeepSpeedConfig) instead of whole in every rank."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.integrations import HfDeepSpeedConfig

    # transformers reads this object (through a weak reference) while it loads.
    zero3 = HfDeepSpeedConfig(ds_conf) if cfg.deepspeed.zero_stage == 3 else None
    loaded = AutoModelForCausalLM.from_pretrained(cfg.model, config=hf_config, dtype=getattr(torch, DTYPES[prec]))
    del zero3   # loaded: later from_pretrained calls (a user's, the export's) are plain again
    if cfg.train.gradient_checkpointing:
        enable_checkpointing(loaded)
    if cfg.lora is not None:
        loaded = with_lora(loaded, cfg.lora)
    return loaded


def enable_checkpointing(model) -> None:
    """Recompute each block in backward. Non-reentrant: works with frozen inputs (LoRA) and
    ZeRO-3. transformers 5 renamed it activation checkpointing."""
    kwargs = {"use_reentrant": False}
    try:
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    except ValueError:
        raise ConfigError(f"workload.train.gradient_checkpointing: {type(model).__name__} does not support it; "
                          "set it to false") from None


def memory_override() -> Optional[Tuple[Optional[int], int]]:
    """TETHER_MEMORY_GB=host[,gpu]: pretend the host has this much (tests, dry planning)."""
    raw = os.environ.get("TETHER_MEMORY_GB")
    if not raw:
        return None
    parts = [float(x) for x in raw.split(",")]
    gib = 1024 ** 3
    return (int(parts[1] * gib) if len(parts) > 1 else None), int(parts[0] * gib)
