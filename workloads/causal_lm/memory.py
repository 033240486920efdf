"""Will it fit? The estimate (estimate.py) for the configured setup against what this rank's
GPU and the host have free, before anything is loaded; if it does not fit, one line naming
the settings that would (each one a config the workload accepts)."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Iterator, List, Optional, Tuple

from . import estimate as est
from .config import CausalLMConfig, ConfigError, check
from .shape import ModelShape, model_shape

GB = est.GIB
HEADROOM = 1.05   # the caching allocator's fragmentation: reserved runs ahead of allocated


def setup_for(cfg: CausalLMConfig, procs: int, on_gpu: bool, prec: Optional[str] = None) -> est.Setup:
    ds, tr = cfg.deepspeed, cfg.train
    if prec is None:   # as trainer.precision() resolves auto, with no GPU to ask about bf16
        prec = ds.precision if ds.precision != "auto" else ("bf16" if on_gpu else "fp32")
    return est.Setup(stage=ds.zero_stage, precision=prec, gpus=procs, micro_batch=tr.micro_batch,
                     seq_len=tr.seq_len, offload_optimizer=ds.offload_optimizer == "cpu",
                     offload_param=ds.offload_param == "cpu", checkpointing=tr.gradient_checkpointing,
                     on_gpu=on_gpu)


def available(on_gpu: bool) -> Tuple[Optional[int], int]:
    """(free bytes on this rank's GPU or None, host RAM available). Only this rank's GPU is
    asked: asking another creates a CUDA context there, which then stays for the whole run.
    Asking creates this process's own context first, and the estimate counts that context,
    so it is added back to what is free."""
    host = _host_available()
    if not on_gpu:
        return None, host
    import torch
    free, _ = torch.cuda.mem_get_info(int(os.environ.get("LOCAL_RANK", "0")))
    return free + est.CUDA_CONTEXT, host


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


def estimate_for(setup: est.Setup, shape: ModelShape, dev_free: Optional[int]) -> est.Estimate:
    """The estimate for what DeepSpeed will do on this GPU: ZeRO-1/2 flatten the weights on
    the CPU instead when the GPU has no room for the copy (more host RAM, less GPU)."""
    need = est.estimate(setup, shape)
    if dev_free is not None and need.startup * HEADROOM > dev_free and setup.stage in (1, 2):
        return est.estimate(replace(setup, flatten_on_gpu=False), shape)
    return need


def fits(need: est.Estimate, dev_free: Optional[int], host_free: int) -> bool:
    ok_host = need.host_bytes <= host_free
    ok_dev = dev_free is None or not need.on_gpu or need.device_bytes * HEADROOM <= dev_free
    return ok_host and ok_dev


def check_fits(cfg: CausalLMConfig, hf_config, procs: int, on_gpu: bool,
               override: Optional[Tuple[Optional[int], int]] = None, prec: Optional[str] = None,
               shape: Optional[ModelShape] = None) -> est.Estimate:
    """The estimate, if it fits; else ConfigError naming settings that would fit."""
    shape = shape or model_shape(hf_config, cfg.lora)
    dev_free, host_free = override or available(on_gpu)
    need = estimate_for(setup_for(cfg, procs, on_gpu, prec), shape, dev_free)
    if fits(need, dev_free, host_free):
        return need
    options: List[str] = []
    for tries in (alternatives, combined):
        for name, alt in tries(cfg):
            if fits(estimate_for(setup_for(alt, procs, on_gpu, prec), shape, dev_free), dev_free, host_free):
                options.append(name)
        if options:
            break
    raise ConfigError(refusal(cfg, shape, need, dev_free, host_free, options))


def summary(need: est.Estimate) -> str:
    """'X GiB per GPU (breakdown), Y GiB of host RAM' for the log."""
    if not need.on_gpu:
        return f"{need.host_bytes / GB:.1f} GiB of host RAM in all (per process: {est.breakdown(need)})"
    return (f"{need.device_bytes / GB:.1f} GiB per GPU ({est.breakdown(need)}), "
            f"{need.host_bytes / GB:.1f} GiB of host RAM")


def refusal(cfg: CausalLMConfig, shape: ModelShape, need: est.Estimate, dev_free: Optional[int],
            host_free: int, options: List[str]) -> str:
    ds, tr = cfg.deepspeed, cfg.train
    where = (f"{need.device_bytes / GB:.1f} GiB per GPU (free: {dev_free / GB:.1f}) and "
             if need.on_gpu and dev_free is not None else "")
    suggestion = ("settings that would fit: " + "; ".join(options[:4])) if options else \
        "no ZeRO stage, offload or micro batch fits on this host (nor gradient checkpointing): " \
        "use a bigger host or a smaller model"
    return (f"the model ({shape.params / 1e9:.2f}B parameters) needs about {where}"
            f"{need.host_bytes / GB:.1f} GiB of host RAM (available: {host_free / GB:.1f}) with "
            f"zero_stage {ds.zero_stage}, offload_optimizer {ds.offload_optimizer}, "
            f"offload_param {ds.offload_param}, micro_batch {tr.micro_batch}, seq_len {tr.seq_len}, "
            f"gradient_checkpointing {str(tr.gradient_checkpointing).lower()} "
            f"({est.breakdown(need)}); {suggestion}")


def _candidates(cfg: CausalLMConfig) -> Iterator[Tuple[str, CausalLMConfig]]:
    ds, tr = cfg.deepspeed, cfg.train
    for stage in range(ds.zero_stage + 1, 4):
        yield f"zero_stage {stage}", replace(cfg, deepspeed=replace(ds, zero_stage=stage))
    if ds.offload_optimizer == "none":
        yield "offload_optimizer cpu", replace(cfg, deepspeed=replace(ds, offload_optimizer="cpu"))
        if ds.zero_stage == 0:
            yield ("zero_stage 2 with offload_optimizer cpu",
                   replace(cfg, deepspeed=replace(ds, zero_stage=2, offload_optimizer="cpu")))
    yield ("zero_stage 3 with offload_optimizer cpu and offload_param cpu",
           replace(cfg, deepspeed=replace(ds, zero_stage=3, offload_optimizer="cpu", offload_param="cpu")))
    mb = tr.micro_batch // 2
    while mb >= 1:
        yield f"micro_batch {mb} (raise grad_accum to keep the batch)", replace(cfg, train=replace(tr, micro_batch=mb))
        mb //= 2


def _accepted(pairs) -> Iterator[Tuple[str, CausalLMConfig]]:
    """Only configs `check` accepts: nothing is offered that the workload would then refuse
    (ZeRO-3 with LoRA, offload at ZeRO-0, ...)."""
    for name, alt in pairs:
        try:
            check(alt)
        except ConfigError:
            continue
        yield name, alt


def alternatives(cfg: CausalLMConfig) -> Iterator[Tuple[str, CausalLMConfig]]:
    """Single changes, cheapest first: gradient checkpointing, a higher stage, offloading, a
    smaller micro batch."""
    if not cfg.train.gradient_checkpointing:
        yield "gradient_checkpointing true", _checkpointed(cfg)
    yield from _accepted(_candidates(cfg))


def combined(cfg: CausalLMConfig) -> Iterator[Tuple[str, CausalLMConfig]]:
    """When no single change fits: each of them together with gradient checkpointing."""
    if not cfg.train.gradient_checkpointing:
        for name, alt in _accepted(_candidates(_checkpointed(cfg))):
            yield f"gradient_checkpointing true and {name}", alt


def _checkpointed(cfg: CausalLMConfig) -> CausalLMConfig:
    return replace(cfg, train=replace(cfg.train, gradient_checkpointing=True))
