"""Will it fit? Parameter, gradient and optimizer-state memory per device for a ZeRO stage and
offload (DeepSpeed's own estimators for stages 2 and 3), plus a rough activation term,
against what the host has -- checked on a model built on the meta device, before loading."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import List, Optional, Tuple

import torch

from .config import CausalLMConfig, ConfigError

GB = 1024 ** 3


@dataclass(frozen=True)
class Need:
    device_bytes: int     # per GPU (on a CPU-only host: nothing; all of it is host RAM)
    host_bytes: int       # host RAM, all processes together


def count_params(hf_config) -> Tuple[int, int]:
    """(total parameters, largest single parameter) without allocating any weights."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf_config)
    sizes = [p.numel() for p in model.parameters()]
    return sum(sizes), max(sizes)


def estimate(cfg: CausalLMConfig, total: int, largest: int, procs: int, on_gpu: bool, hf_config) -> Need:
    ds, tr = cfg.deepspeed, cfg.train
    offload_opt, offload_par = ds.offload_optimizer == "cpu", ds.offload_param == "cpu"
    if ds.zero_stage == 3:
        from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
        cpu, dev, _ = estimate_zero3_model_states_mem_needs(total, largest, procs, 1, offload_opt, offload_par, True)
    elif ds.zero_stage == 2:
        from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs
        cpu, dev = estimate_zero2_model_states_mem_needs(total, procs, 1, offload_opt)
    elif ds.zero_stage == 1:  # only optimizer states are partitioned
        dev = 2 * total + 2 * total + int(16 * total / procs) if not offload_opt else 4 * total
        cpu = int(16 * total * 1.5) if offload_opt else 4 * total * procs
    else:  # stage 0: every process holds everything (fp32 master, grads, Adam moments)
        dev, cpu = 16 * total + 4 * total, 4 * total * procs
    hidden = getattr(hf_config, "hidden_size", 0) or getattr(hf_config, "n_embd", 0)
    layers = getattr(hf_config, "num_hidden_layers", 0) or getattr(hf_config, "n_layer", 0)
    vocab = getattr(hf_config, "vocab_size", 0)
    # Activations with no checkpointing, ~34 bytes per token per hidden unit per layer, plus logits.
    act = tr.micro_batch * tr.seq_len * (34 * hidden * layers + 8 * vocab)
    dev += act
    if not on_gpu:
        return Need(0, cpu + dev * procs)
    return Need(dev, cpu)


def available(on_gpu: bool) -> Tuple[Optional[int], int]:
    """(free bytes on the smallest GPU or None, host RAM available)."""
    host = _host_available()
    if not on_gpu:
        return None, host
    return min(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())), host


def _host_available() -> int:
    try:
        import psutil
        return int(psutil.virtual_memory().available)
    except ImportError:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def fits(need: Need, dev_free: Optional[int], host_free: int, headroom: float = 1.1) -> bool:
    ok_host = need.host_bytes * headroom <= host_free
    ok_dev = dev_free is None or need.device_bytes * headroom <= dev_free
    return ok_host and ok_dev


def check_fits(cfg: CausalLMConfig, hf_config, procs: int, on_gpu: bool,
               override: Optional[Tuple[Optional[int], int]] = None) -> Need:
    """Raises ConfigError naming settings that would fit, instead of dying on step 1."""
    total, largest = count_params(hf_config)
    dev_free, host_free = override or available(on_gpu)
    need = estimate(cfg, total, largest, procs, on_gpu, hf_config)
    if fits(need, dev_free, host_free):
        return need
    options: List[str] = []
    for name, alt in _alternatives(cfg):
        if fits(estimate(alt, total, largest, procs, on_gpu, hf_config), dev_free, host_free):
            options.append(name)
    where = (f"{need.device_bytes / GB:.1f} GiB per GPU (free: {dev_free / GB:.1f}) and "
             if on_gpu and dev_free is not None else "")
    suggestion = ("settings that would fit: " + "; ".join(options)) if options else \
        "no ZeRO stage, offload or micro batch fits on this host: use a bigger host or a smaller model"
    raise ConfigError(f"the model ({total / 1e9:.2f}B parameters) needs about {where}"
                      f"{need.host_bytes / GB:.1f} GiB of host RAM (available: {host_free / GB:.1f}) with "
                      f"zero_stage {cfg.deepspeed.zero_stage}, offload_optimizer {cfg.deepspeed.offload_optimizer}, "
                      f"offload_param {cfg.deepspeed.offload_param}, micro_batch {cfg.train.micro_batch}; {suggestion}")


def _alternatives(cfg: CausalLMConfig):
    ds, tr = cfg.deepspeed, cfg.train
    for stage in range(ds.zero_stage + 1, 4):
        yield f"zero_stage {stage}", replace(cfg, deepspeed=replace(ds, zero_stage=stage))
    if ds.zero_stage >= 1 and ds.offload_optimizer == "none":
        yield "offload_optimizer cpu", replace(cfg, deepspeed=replace(ds, offload_optimizer="cpu"))
    yield ("zero_stage 3 with offload_optimizer cpu and offload_param cpu",
           replace(cfg, deepspeed=replace(ds, zero_stage=3, offload_optimizer="cpu", offload_param="cpu")))
    mb = tr.micro_batch // 2
    while mb >= 1:
        yield f"micro_batch {mb} (raise grad_accum to keep the batch)", replace(cfg, train=replace(tr, micro_batch=mb))
        mb //= 2
