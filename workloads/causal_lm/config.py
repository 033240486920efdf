"""The causal-lm workload's options, checked before anything heavy is imported.

The same block is `workload:` in a job spec (the launcher checks its shape with pydantic);
here it is checked again for meaning, because the workload also runs by hand."""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional


class ConfigError(Exception):
    """A mistake in the workload's options or inputs: one line, exit code 2, before training."""


@dataclass(frozen=True)
class DeepSpeedOptions:
    zero_stage: int = 2
    offload_optimizer: str = "none"   # none | cpu
    offload_param: str = "none"       # none | cpu (ZeRO-3 only)
    precision: str = "auto"           # auto | bf16 | fp16 | fp32


@dataclass(frozen=True)
class TrainOptions:
    max_steps: Optional[int] = None
    epochs: Optional[float] = None
    micro_batch: int = 4
    grad_accum: int = 1
    lr: float = 2e-5
    warmup: int = 0
    schedule: str = "cosine"          # cosine | linear | constant
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 42
    eval_every: int = 0
    eval_batches: int = 4
    save_every: int = 0
    keep_checkpoints: int = 2
    seq_len: int = 1024
    gradient_checkpointing: bool = False   # recompute each block in backward: less memory, ~1/3 more compute


@dataclass(frozen=True)
class LoraOptions:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: Optional[List[str]] = None


@dataclass(frozen=True)
class CausalLMConfig:
    model: str
    data: str
    tokenizer: Optional[str] = None
    text_field: str = "text"
    procs: Any = "auto"               # auto (all GPUs, or 1 on the CPU) or a number
    deepspeed: DeepSpeedOptions = field(default_factory=DeepSpeedOptions)
    train: TrainOptions = field(default_factory=TrainOptions)
    lora: Optional[LoraOptions] = None

    def to_dict(self) -> Dict[str, Any]:
        from dataclasses import asdict
        return asdict(self)


# What a value of each annotation may be (JSON's types; a whole number also passes as a float).
_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "List[str]": (list,)}


def _check_type(where: str, value: Any, annotation: str) -> None:
    optional = annotation.startswith("Optional[")
    inner = annotation[len("Optional["):-1] if optional else annotation
    if value is None and optional or inner not in _TYPES:
        return
    ok = isinstance(value, _TYPES[inner]) and not (isinstance(value, bool) and inner in ("int", "float"))
    if ok and inner == "List[str]":
        ok = all(isinstance(x, str) for x in value)
    if not ok:
        raise ConfigError(f"{where}: {value!r} is not {'a list of names' if inner == 'List[str]' else 'a ' + inner}")


def _build(cls, raw: Any, where: str):
    """raw, once every key is an option of cls and every value of its type (the one schema of
    these options: the launcher checks a spec's `workload:` with it too)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {raw!r}")
    known = {f.name: f for f in fields(cls)}
    for key, value in raw.items():
        if key not in known:
            guess = difflib.get_close_matches(str(key), known, n=1, cutoff=0.5)
            hint = f"; did you mean '{guess[0]}'?" if guess else f"; known: {', '.join(known)}"
            raise ConfigError(f"{where}.{key}: unknown key{hint}")
        if not is_dataclass_type(known[key].type):
            _check_type(f"{where}.{key}", value, str(known[key].type))
    return raw


def is_dataclass_type(annotation: Any) -> bool:
    return str(annotation).replace("Optional[", "").rstrip("]") in ("DeepSpeedOptions", "TrainOptions", "LoraOptions")


def parse(raw: Dict[str, Any]) -> CausalLMConfig:
    """The workload block (the `kind` key, if present, is ignored) -> a checked config."""
    raw = {k: v for k, v in raw.items() if k != "kind"}
    _build(CausalLMConfig, raw, "workload")
    for required in ("model", "data"):
        if not raw.get(required):
            raise ConfigError(f"workload.{required}: required")
    ds = DeepSpeedOptions(**_build(DeepSpeedOptions, raw.get("deepspeed") or {}, "workload.deepspeed"))
    tr = TrainOptions(**_build(TrainOptions, raw.get("train") or {}, "workload.train"))
    lora = None
    if raw.get("lora") is not None:
        lora = LoraOptions(**_build(LoraOptions, raw["lora"], "workload.lora"))
    cfg = CausalLMConfig(model=str(raw["model"]), data=str(raw["data"]), tokenizer=raw.get("tokenizer"),
                         text_field=raw.get("text_field", "text"), procs=raw.get("procs", "auto"),
                         deepspeed=ds, train=tr, lora=lora)
    check(cfg)
    return cfg


def check(cfg: CausalLMConfig) -> None:
    ds, tr = cfg.deepspeed, cfg.train
    if ds.zero_stage not in (0, 1, 2, 3):
        raise ConfigError(f"workload.deepspeed.zero_stage: {ds.zero_stage} is not a ZeRO stage; use 0, 1, 2 or 3")
    for name in ("offload_optimizer", "offload_param"):
        if getattr(ds, name) not in ("none", "cpu"):
            raise ConfigError(f"workload.deepspeed.{name}: {getattr(ds, name)!r}; use none or cpu")
    if ds.offload_param == "cpu" and ds.zero_stage != 3:
        raise ConfigError("workload.deepspeed.offload_param: cpu needs zero_stage 3 "
                          "(parameters are only partitioned, and so offloadable, in ZeRO-3)")
    if ds.offload_optimizer == "cpu" and ds.zero_stage == 0:
        raise ConfigError("workload.deepspeed.offload_optimizer: cpu needs zero_stage 1, 2 or 3")
    if ds.precision not in ("auto", "bf16", "fp16", "fp32"):
        raise ConfigError(f"workload.deepspeed.precision: {ds.precision!r}; use auto, bf16, fp16 or fp32")
    if (tr.max_steps is None) == (tr.epochs is None):
        raise ConfigError("workload.train: give exactly one of max_steps or epochs")
    for name in ("micro_batch", "grad_accum", "seq_len"):
        if getattr(tr, name) < 1:
            raise ConfigError(f"workload.train.{name}: must be at least 1")
    if tr.max_steps is not None and tr.max_steps < 1:
        raise ConfigError("workload.train.max_steps: must be at least 1")
    if tr.epochs is not None and tr.epochs <= 0:
        raise ConfigError("workload.train.epochs: must be positive")
    if not isinstance(tr.gradient_checkpointing, bool):
        raise ConfigError(f"workload.train.gradient_checkpointing: {tr.gradient_checkpointing!r}; use true or false")
    if tr.schedule not in ("cosine", "linear", "constant"):
        raise ConfigError(f"workload.train.schedule: {tr.schedule!r}; use cosine, linear or constant")
    if tr.lr <= 0:
        raise ConfigError("workload.train.lr: must be positive")
    if cfg.lora is not None and ds.zero_stage == 3:
        raise ConfigError("workload.lora: LoRA works with zero_stage 0-2 in this version")
    if not (cfg.procs == "auto" or (isinstance(cfg.procs, int) and cfg.procs >= 1)):
        raise ConfigError(f"workload.procs: {cfg.procs!r}; use auto or a number of processes")


def load_file(path: str) -> CausalLMConfig:
    """A config file (YAML or JSON), or a job spec.json whose spec.workload is the config."""
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such config file")
    with open(path) as f:
        text = f.read()
    if path.endswith((".yaml", ".yml")):
        import yaml
        raw = yaml.safe_load(text)
    else:
        raw = json.loads(text)
    if isinstance(raw, dict) and "spec" in raw and "job" in raw:  # the agent's spec.json
        raw = raw["spec"].get("workload") or {}
    if isinstance(raw, dict) and "workload" in raw and "model" not in raw:  # a job spec
        raw = raw["workload"]
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of workload options")
    return parse(raw)
