"""How much memory a training setup needs, per GPU and in host RAM, as named terms.

Model states follow the code paths DeepSpeed 0.19 takes for this workload (checked against
its own estimators where their assumptions agree, tests/test_memory_fit.py): with bf16/fp16
every GPU holds 16-bit weights, 16-bit and fp32 gradients, an fp32 master copy and Adam's two
moments, partitioned over the data-parallel ranks as the stage says (ZeRO-1: optimizer;
ZeRO-2: + gradients; ZeRO-3: + weights). In fp32 there is no separate 16-bit copy. With LoRA
the frozen weights are weights only, and only the adapters have gradients and moments.

    per GPU = max(start-up peak,
                  params + grads + optimizer + fixed + max(activations + logits, optimizer step))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

from . import activations as act
from .shape import ModelShape

GIB = 1024 ** 3
CUDA_CONTEXT = GIB // 2          # context, kernels and cuBLAS workspaces, outside torch's allocator
NCCL_BUFFERS = GIB // 2          # NCCL's channels and proxy buffers, with more than one GPU
REDUCE_BUCKET = 500_000_000      # DeepSpeed's reduce_bucket_size default, in elements
PREFETCH_BUCKET = 50_000_000     # ZeRO-3 stage3_prefetch_bucket_size default
REUSE_DISTANCE = 1_000_000_000   # ZeRO-3 stage3_max_reuse_distance default
SUB_GROUP = 1_000_000_000        # ZeRO-3 sub_group_size: the optimizer steps this many at once
PINNED_FACTOR = 1.5              # DeepSpeed's own buffer factor for offloaded (pinned) host memory
RUNTIME_GPU = int(2.5 * GIB)     # host RAM of one process: Python, torch, CUDA libraries, NCCL
RUNTIME_CPU = 1 * GIB            # the same without CUDA

GROUPS = ("params", "grads", "optimizer", "activations", "logits", "fixed")


@dataclass(frozen=True)
class Setup:
    stage: int
    precision: str                  # bf16 | fp16 | fp32 (auto already resolved)
    gpus: int                       # data-parallel processes
    micro_batch: int
    seq_len: int
    offload_optimizer: bool = False
    offload_param: bool = False
    checkpointing: bool = False
    on_gpu: bool = True
    flatten_on_gpu: bool = True     # ZeRO-1/2 flatten on the GPU when it has room, else on the CPU

    @property
    def p(self) -> int:
        return 4 if self.precision == "fp32" else 2


@dataclass(frozen=True)
class Term:
    group: str        # one of GROUPS
    name: str
    bytes: int


@dataclass(frozen=True)
class Estimate:
    terms: Tuple[Term, ...]      # per GPU (per process on a CPU-only host)
    step: int                    # what the optimizer step adds, when it beats activations
    startup: int                 # per GPU while loading and partitioning
    host_terms: Tuple[Term, ...]  # host RAM, all processes together
    host_startup: int
    on_gpu: bool = True
    approximate: str = ""        # why the activation terms are approximate, if they are

    def group(self, name: str) -> int:
        return sum(t.bytes for t in self.terms if t.group == name)

    @property
    def steady(self) -> int:
        states = sum(self.group(g) for g in ("params", "grads", "optimizer", "fixed"))
        return states + max(self.group("activations") + self.group("logits"), self.step)

    @property
    def device_bytes(self) -> int:
        """Per GPU; 0 on a CPU-only host, where all of it is host RAM."""
        return max(self.startup, self.steady) if self.on_gpu else 0

    @property
    def host_bytes(self) -> int:
        return max(self.host_startup, sum(t.bytes for t in self.host_terms))

    @property
    def allocated_bytes(self) -> int:
        """What torch's allocator should report at its peak: all but what lives outside it."""
        outside = sum(t.bytes for t in self.terms if t.name in ("CUDA context", "NCCL"))
        return max(self.startup, self.steady - outside)


def _model_states(s: Setup, m: ModelShape) -> List[Term]:
    """params, grads, optimizer per GPU for the stage, precision and offload."""
    w, p, t, n = s.gpus, s.p, m.trainable, m.params
    mixed = p == 2
    if s.stage == 3:
        params = 0 if s.offload_param else p * n // w
        out = [Term("params", "weights (partition)", params),
               Term("params", "largest layer gathered, with its gradient", 2 * p * m.largest)]
    else:
        out = [Term("params", "weights", p * n)]
    if s.offload_optimizer:   # gradients, master weights and moments live in host RAM
        return out
    grads16 = p * t if s.stage <= 1 else p * t // w
    if s.stage == 0:
        grads32 = 4 * t if mixed else 0
        master = 4 * t if mixed else 0
        moments = 8 * t
    else:   # ZeRO keeps an fp32 partition of weights and gradients even in fp32
        grads32, master, moments = 4 * t // w, 4 * t // w, 8 * t // w
    label = "16-bit" if mixed else "fp32"
    out += [Term("grads", f"{label} gradients", grads16), Term("grads", "fp32 gradients", grads32),
            Term("optimizer", "fp32 master weights", master), Term("optimizer", "Adam moments", moments)]
    return [x for x in out if x.bytes]


def _step(s: Setup, m: ModelShape) -> int:
    """What the optimizer step adds: torch's foreach AdamW keeps one fp32 temporary the size of
    what it steps (ZeRO-3 steps one sub-group at a time)."""
    if s.offload_optimizer:
        return 0
    t = m.trainable if s.stage == 0 else m.trainable // s.gpus
    if s.stage == 3:
        t = min(t, SUB_GROUP)
    # (the flat 16-bit copy is gone by the time the foreach temporary exists)
    return 4 * t


def _fixed(s: Setup, m: ModelShape) -> List[Term]:
    out = []
    if s.on_gpu:
        out.append(Term("fixed", "CUDA context", CUDA_CONTEXT))
        if s.gpus > 1:
            out.append(Term("fixed", "NCCL", NCCL_BUFFERS))
    # DeepSpeed allocates its whole reduce bucket on the GPU whatever the model's size; in host
    # RAM only the pages it touches become resident. ZeRO-1 reduces in fp32.
    bucket = REDUCE_BUCKET if s.on_gpu else min(REDUCE_BUCKET, m.trainable)
    if s.stage in (1, 2, 3):
        out.append(Term("fixed", "reduce bucket", bucket * (4 if s.stage == 1 else s.p)))
    if s.stage == 3:
        # Parameters used again within max_reuse_distance stay gathered: at the turn from
        # forward to backward that is the last blocks, up to half the distance.
        window = min(m.params, REUSE_DISTANCE // 2 + PREFETCH_BUCKET)
        out.append(Term("fixed", "ZeRO-3 gathered params", s.p * window))
    return out


def _activations(s: Setup, m: ModelShape, kernels: act.Kernels) -> List[Term]:
    peak = act.peak(m, s.p, s.micro_batch, s.seq_len, s.checkpointing, kernels)
    return [Term("activations", "activations", peak.activations), Term("logits", "logits", peak.logits)]


def _flattens_on_gpu(s: Setup) -> bool:
    return s.on_gpu and s.flatten_on_gpu and s.stage in (1, 2)


def _startup(s: Setup, m: ModelShape) -> int:
    """Per GPU before training: ZeRO-3 builds the model partitioned (zero.Init) and gathers one
    parameter at a time to load it; ZeRO-1/2 flatten the trainable weights into a copy, on the
    GPU if it has room for it."""
    if s.stage == 3:
        return (0 if s.offload_param else s.p * m.params // s.gpus) + s.p * m.largest
    return s.p * m.params + (s.p * m.trainable if _flattens_on_gpu(s) else 0)


def _host(s: Setup, m: ModelShape, per_process: int) -> Tuple[List[Term], int]:
    """Host RAM, all processes: runtime, offloaded states; start-up: each rank loads the model
    in the training dtype (ZeRO-0-2), or one parameter at a time (ZeRO-3, zero.Init)."""
    w = s.gpus
    runtime = (RUNTIME_GPU if s.on_gpu else RUNTIME_CPU) * w
    terms = [Term("fixed", "runtime (per process)", runtime)]
    if s.offload_optimizer:   # fp32 master, moments and gradients, in pinned buffers
        terms.append(Term("optimizer", "offloaded optimizer", int(16 * m.trainable * PINNED_FACTOR)))
    if s.offload_param:
        terms.append(Term("params", "offloaded weights", int(s.p * m.params * PINNED_FACTOR)))
    if not s.on_gpu:   # every "GPU" term lives in this process's RAM
        terms.append(Term("params", "training state (all processes)", per_process * w))
    load = s.p * (m.largest if s.stage == 3 else m.params)
    if s.on_gpu and s.stage in (1, 2) and not s.flatten_on_gpu:   # the weights and their flat copy
        load = max(load, 2 * s.p * m.trainable)
    return terms, runtime + load * w


def estimate(s: Setup, m: ModelShape, kernels: act.Kernels = act.CUDA) -> Estimate:
    terms = _model_states(s, m) + _activations(s, m, kernels) + _fixed(s, m)
    est = Estimate(tuple(terms), _step(s, m), _startup(s, m), (), 0, s.on_gpu)
    host, host_startup = _host(s, m, max(est.steady, est.startup))
    why = "" if m.llama_like else f"{m.model_type or 'this model'} is not Llama-like"
    return Estimate(est.terms, est.step, est.startup, tuple(host), host_startup, s.on_gpu, why)


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB" if n >= GIB // 10 else f"{n / 2 ** 20:.1f} MiB"


def breakdown(e: Estimate) -> str:
    """'params 2.4 GiB, grads ..., optimizer ..., activations ..., logits ..., start-up peak
    ..., fixed ...' per GPU (per process on a CPU-only host)."""
    parts: Dict[str, str] = {}
    for g in GROUPS:
        if g == "fixed":
            continue
        parts[g] = f"{g} {_gib(e.group(g))}"
    if e.approximate:
        parts["activations"] += f" (approximate: {e.approximate})"
    if e.step > e.group("activations") + e.group("logits"):
        parts["optimizer"] += f" (+{_gib(e.step)} at the step)"
    text = ", ".join(parts.values()) + f", start-up peak {_gib(e.startup)}"
    fixed = [t for t in e.terms if t.group == "fixed"]
    if fixed:
        text += f", fixed {_gib(e.group('fixed'))} (" + ", ".join(f"{t.name} {_gib(t.bytes)}" for t in fixed) + ")"
    return text
