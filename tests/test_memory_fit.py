"""The causal-lm memory check (issue #17): model states against DeepSpeed's own estimators,
activation and logits peaks against a real forward/backward measured on the CPU, the check's
verdicts and suggestions, and the causes fixed in the workload (zero.Init for ZeRO-3, only
this rank's GPU asked, no KV cache, logits dropped before backward)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from workloads.causal_lm import activations as act
from workloads.causal_lm import estimate as est
from workloads.causal_lm.config import ConfigError, check, parse
from workloads.causal_lm.memory import alternatives, available, check_fits, combined
from workloads.causal_lm.shape import ModelShape, model_shape

REPO = Path(__file__).resolve().parent.parent
GIB = 1024 ** 3


def shape_of(params: int, largest: int, trainable: int = 0, **over) -> ModelShape:
    """A model in plain numbers (a 7B Llama's layer sizes unless told)."""
    base = dict(params=params, largest=largest, trainable=trainable or params, layers=32, hidden=4096,
                intermediate=11008, heads=32, kv_dim=4096, vocab=32000, model_type="llama", attn="sdpa")
    return ModelShape(**{**base, **over})


def states(e: est.Estimate) -> int:
    return sum(e.group(g) for g in ("params", "grads", "optimizer"))


def llama(h: int, layers: int, inter: int, heads: int, kv: int, vocab: int = 32000):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=vocab, hidden_size=h, intermediate_size=inter, num_hidden_layers=layers,
                       num_attention_heads=heads, num_key_value_heads=kv)


def workload(**over) -> dict:
    raw = {"model": "m", "data": "d", "deepspeed": {"zero_stage": 2},
           "train": {"max_steps": 10, "micro_batch": 1, "seq_len": 512}}
    for k, v in over.items():
        raw[k] = {**raw[k], **v} if isinstance(v, dict) and isinstance(raw.get(k), dict) else v
    return raw


# -- model states against DeepSpeed's estimators ----------------------------------------------

N, L = 7_000_000_000, 131_072_000   # divisible by every GPU count below: no rounding between the two


@pytest.mark.parametrize("gpus", [1, 2, 4, 8])
@pytest.mark.parametrize("offload", [False, True])
def test_zero2_model_states_match_deepspeeds_estimator(gpus, offload):
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    cpu, gpu = estimate_zero2_model_states_mem_needs(N, gpus, 1, offload)
    e = est.estimate(est.Setup(2, "bf16", gpus, 1, 512, offload_optimizer=offload), shape_of(N, L))
    assert states(e) == gpu   # 2 (weights) + 18/W: 16-bit and fp32 grads, fp32 master, moments
    if offload and gpus <= 4:   # 16 bytes/param offloaded, with DeepSpeed's 1.5 buffer factor
        assert sum(t.bytes for t in e.host_terms if t.name == "offloaded optimizer") == cpu
    if not offload or gpus > 4:  # DeepSpeed assumes each rank loads the model in fp32 first
        fp32 = est.estimate(est.Setup(2, "fp32", gpus, 1, 512, offload_optimizer=offload), shape_of(N, L))
        load = fp32.host_startup - est.RUNTIME_GPU * gpus
        assert load * est.PINNED_FACTOR == cpu


@pytest.mark.parametrize("gpus", [1, 8])
@pytest.mark.parametrize("offload_optimizer, offload_param", [(False, False), (True, False), (True, True)])
def test_zero3_model_states_match_deepspeeds_estimator(gpus, offload_optimizer, offload_param):
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

    cpu, gpu, largest_layer = estimate_zero3_model_states_mem_needs(N, L, gpus, 1, offload_optimizer,
                                                                    offload_param, True)
    setup = est.Setup(3, "bf16", gpus, 1, 512, offload_optimizer=offload_optimizer, offload_param=offload_param)
    e = est.estimate(setup, shape_of(N, L))
    # DeepSpeed's 18/W counts fp32 master, moments and gradients and the 16-bit weights; 0.19
    # also keeps the 16-bit gradient partition (grad_partitions_flat_buffer) on the GPU.
    grads16 = 0 if offload_optimizer else 2 * N // gpus
    assert states(e) == gpu + grads16
    assert any(t.bytes == largest_layer for t in e.terms if t.group == "params")
    host = sum(t.bytes for t in e.host_terms if t.name.startswith("offloaded"))
    if offload_optimizer:   # zero.Init: nothing loaded whole; 16 (+2 with weights) bytes/param, x1.5
        assert host == cpu
    else:                   # zero.Init: one parameter at a time, which DeepSpeed counts in fp32
        load = est.estimate(replace(setup, precision="fp32"), shape_of(N, L)).host_startup - est.RUNTIME_GPU * gpus
        assert load * est.PINNED_FACTOR == cpu


def test_precision_is_read_fp32_weights_and_grads_are_four_bytes():
    shape = shape_of(N, L)
    bf16 = est.estimate(est.Setup(2, "bf16", 1, 1, 512), shape)
    fp32 = est.estimate(est.Setup(2, "fp32", 1, 1, 512), shape)
    assert bf16.group("params") == 2 * N and fp32.group("params") == 4 * N
    assert fp32.group("activations") > 1.6 * bf16.group("activations")


def test_stage0_bf16_peaks_near_24_bytes_per_param_at_the_optimizer_step():
    e = est.estimate(est.Setup(0, "bf16", 1, 1, 16), shape_of(N, L))
    assert states(e) + e.step == 24 * N   # 2 + 2 + 4 (grads) + 4 + 8 (master, moments) + 4 (foreach temp)
    fp32 = est.estimate(est.Setup(0, "fp32", 1, 1, 16), shape_of(N, L))
    assert states(fp32) + fp32.step == 20 * N   # no 16-bit copy, no master: 4 + 4 + 8 + 4
    assert e.step > e.group("activations") + e.group("logits")


def test_full_fine_tuning_of_7b_costs_what_users_report():
    """16-20 bytes/param are reported for full fine-tuning of a 7B in mixed precision (model
    states, one GPU, ZeRO-2 with nothing offloaded and nothing else counted)."""
    shape = model_shape(llama(4096, 32, 11008, 32, 32))
    e = est.estimate(est.Setup(2, "bf16", 1, 1, 512), shape)
    assert 16 <= states(e) / shape.params <= 20


def test_lora_counts_frozen_weights_and_trainable_state_only():
    from workloads.causal_lm.config import LoraOptions

    shape = model_shape(llama(4096, 32, 11008, 32, 32), LoraOptions(r=8))
    assert shape.trainable == 19_988_480   # r x (in + out) over q, k, v, o, gate, up, down in 32 blocks
    assert set(shape.lora_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    e = est.estimate(est.Setup(2, "bf16", 1, 1, 512), shape)
    assert e.group("params") == 2 * shape.params
    assert e.group("grads") + e.group("optimizer") == 18 * shape.trainable   # 2 + 4 + 4 + 8, for 20M, not 7B


def test_the_breakdown_names_every_term():
    e = est.estimate(est.Setup(3, "bf16", 8, 1, 512), shape_of(N, L))
    text = est.breakdown(e)
    for name in ("params", "grads", "optimizer", "activations", "logits", "start-up peak", "fixed",
                 "CUDA context", "NCCL", "reduce bucket", "ZeRO-3 gathered params"):
        assert name in text, text


def test_fixed_costs_and_start_up_peaks():
    shape = shape_of(N, L)
    one = est.estimate(est.Setup(2, "bf16", 1, 1, 512), shape)
    eight = est.estimate(est.Setup(2, "bf16", 8, 1, 512), shape)
    assert one.group("fixed") == est.CUDA_CONTEXT + 2 * est.REDUCE_BUCKET
    assert eight.group("fixed") == one.group("fixed") + est.NCCL_BUFFERS
    # ZeRO-1/2 flatten a copy of the trainable weights on the GPU before the optimizer exists
    assert one.startup == 2 * N + 2 * N
    # ZeRO-3 builds the model partitioned (zero.Init): a slice per GPU plus one gathered parameter
    z3 = est.estimate(est.Setup(3, "bf16", 8, 1, 512, True, True), shape)
    assert z3.startup == 2 * L
    assert z3.host_startup == 8 * (est.RUNTIME_GPU + 2 * L)


# -- activations and logits against a real forward/backward on the CPU ------------------------

TINY = dict(layers=2, hidden=128, intermediate=344, heads=4, kv_heads=2, vocab=1000, micro_batch=2, seq=64)
SMALL = dict(layers=4, hidden=256, intermediate=688, heads=8, kv_heads=4, vocab=4000, micro_batch=2, seq=128)
# Stated tolerance: the estimate is within -7% / +10% of the measured peak.
LOW, HIGH = 0.93, 1.10


def _cases():
    for size, dims in (("tiny", TINY), ("small", SMALL)):
        for precision in ("fp32", "bf16"):
            for checkpointing in (False, True):
                for lora in (0, 8):
                    yield pytest.param(dims, precision, checkpointing, lora, "sdpa",
                                       id=f"{size}-{precision}-{'ckpt' if checkpointing else 'full'}-"
                                          f"{'lora' if lora else 'ft'}")
        yield pytest.param(dims, "bf16", False, 0, "eager", id=f"{size}-bf16-eager")
        yield pytest.param(dims, "fp32", True, 8, "eager", id=f"{size}-fp32-ckpt-lora-eager")


@pytest.mark.parametrize("dims, precision, checkpointing, lora, attn", list(_cases()))
def test_activation_and_logits_peak_matches_a_measured_forward_backward(dims, precision, checkpointing, lora, attn):
    from cpu_peak import Case, measure

    case = Case(**dims, precision=precision, checkpointing=checkpointing, lora_r=lora, attn=attn)
    measured = measure(case)
    p = 4 if precision == "fp32" else 2
    peak = act.peak(model_shape(case.hf_config(), case.lora()), p, case.micro_batch, case.seq, checkpointing,
                    act.cpu_kernels(p))
    ratio = (peak.activations + peak.logits) / measured
    assert LOW <= ratio <= HIGH, f"estimate {peak} / measured {measured} = {ratio:.3f}"


def test_the_cpu_tracker_agrees_with_torchs_memtracker():
    from cpu_peak import Case, measure, measure_with_memtracker

    case = Case(**TINY)
    assert measure(case) == measure_with_memtracker(case)


def test_checkpointing_and_eager_attention_change_the_activation_term():
    shape = model_shape(llama(4096, 32, 11008, 32, 32))
    full = act.peak(shape, 2, 1, 2048, False)
    ckpt = act.peak(shape, 2, 1, 2048, True)
    assert ckpt.activations < full.activations / 10 and ckpt.logits == full.logits
    eager = act.peak(replace(shape, attn="eager"), 2, 1, 2048, False)
    # softmax's fp32 output and its bf16 copy, s x s per head per block: 6 x 32 x 2048^2 x 32
    assert eager.activations - full.activations >= 6 * 32 * 2048 ** 2 * 32
    # Llama-7B-like in bf16: 22h + 4kv + 8i bytes per token per block = ~47.5 bytes x hidden
    assert 45 <= act.block_bytes(shape, 2, 2048, act.CUDA) / 4096 <= 48
    # the loss: fp32 log-probabilities, their gradient and the nll gradient, 12 bytes per vocab entry
    assert full.logits == 12 * 32000 * 2048


# -- the check's verdicts ---------------------------------------------------------------------

def test_a_125m_model_in_fp32_with_a_big_micro_batch_is_refused_on_24gb():
    """Issue #17: estimated 11.2 GiB, needs about 24."""
    hf = llama(768, 12, 3072, 12, 12)
    cfg = parse(workload(deepspeed={"zero_stage": 2, "precision": "fp32"}, train={"micro_batch": 8, "seq_len": 2048}))
    with pytest.raises(ConfigError) as err:
        check_fits(cfg, hf, 1, True, override=(24 * GIB, 200 * GIB), prec="fp32")
    assert "gradient_checkpointing true" in str(err.value)


def test_a_7b_lora_in_bf16_fits_on_24gb():
    """Issue #17: it was refused at an estimated 127.8 GiB; it needs about 19."""
    hf = llama(4096, 32, 11008, 32, 32)
    cfg = parse(workload(lora={"r": 8}, train={"micro_batch": 1, "seq_len": 512}))
    need = check_fits(cfg, hf, 1, True, override=(24 * GIB, 64 * GIB), prec="bf16")
    assert 16 * GIB < need.device_bytes < 21 * GIB


def test_checkpointing_is_offered_when_it_makes_the_job_fit():
    hf = llama(4096, 32, 11008, 32, 32)
    cfg = parse(workload(lora={"r": 8}, train={"micro_batch": 4, "seq_len": 2048}))
    with pytest.raises(ConfigError) as err:
        check_fits(cfg, hf, 1, True, override=(24 * GIB, 64 * GIB), prec="bf16")
    text = str(err.value)
    assert "settings that would fit: gradient_checkpointing true" in text
    assert "activations" in text and "logits" in text    # the breakdown is in the one line
    on = parse(workload(lora={"r": 8}, train={"micro_batch": 4, "seq_len": 2048, "gradient_checkpointing": True}))
    check_fits(on, hf, 1, True, override=(24 * GIB, 64 * GIB), prec="bf16")


def test_alternatives_never_suggest_what_the_config_rejects():
    cfg = parse(workload(deepspeed={"zero_stage": 0}, lora={"r": 8}, train={"micro_batch": 8}))
    names = [name for gen in (alternatives, combined) for name, _ in gen(cfg)]
    assert names and not any("zero_stage 3" in n for n in names)        # LoRA: stages 0-2 only
    assert "offload_optimizer cpu" not in names                          # not at stage 0 ...
    assert "zero_stage 2 with offload_optimizer cpu" in names            # ... but with a stage that takes it
    for gen in (alternatives, combined):
        for _, alt in gen(cfg):
            check(alt)


def test_a_host_ram_shortfall_is_not_answered_with_zero3():
    """A 13B job with everything offloaded needs hundreds of GiB of host RAM; ZeRO-3 does not
    fix a host shortfall, so it is not offered."""
    hf = llama(5120, 40, 13824, 40, 40)
    cfg = parse(workload(deepspeed={"zero_stage": 3, "offload_optimizer": "cpu", "offload_param": "cpu"},
                         train={"gradient_checkpointing": True}))
    with pytest.raises(ConfigError) as err:
        check_fits(cfg, hf, 1, True, override=(24 * GIB, 64 * GIB), prec="bf16")
    text = str(err.value)
    assert "GiB of host RAM (available: 64.0)" in text and "no ZeRO stage" in text
    need = est.estimate(est.Setup(3, "bf16", 1, 1, 512, True, True, True), model_shape(hf))
    assert need.startup < 2 * GIB < need.device_bytes < 24 * GIB   # zero.Init: no whole model per GPU
    assert need.host_bytes > 300 * GIB


def test_only_this_ranks_gpu_is_asked(monkeypatch):
    import torch

    asked = []
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i=None: asked.append(i) or (10 * GIB, 80 * GIB))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    monkeypatch.setenv("LOCAL_RANK", "3")
    free, _ = available(True)
    assert asked == [3]
    assert free == 10 * GIB + est.CUDA_CONTEXT   # this process's context is counted in the estimate


# -- the workload's side ----------------------------------------------------------------------

def test_gradient_checkpointing_is_an_option_of_the_workload_and_the_spec():
    from launcher.spec import WorkloadSpec

    assert parse(workload(train={"gradient_checkpointing": True})).train.gradient_checkpointing is True
    with pytest.raises(ConfigError, match="gradient_checkpointing: 'yes' is not a bool"):
        parse(workload(train={"gradient_checkpointing": "yes"}))
    spec = WorkloadSpec.model_validate({"kind": "causal-lm", **workload(train={"gradient_checkpointing": True})})
    assert spec.model_dump()["train"]["gradient_checkpointing"] is True  # the spec reads the same schema


class _Out:
    def __init__(self, loss, logits):
        self.loss, self.logits = loss, logits


class _Engine:
    """Records each forward's keyword arguments and whether the previous output still lives."""

    def __init__(self):
        import weakref

        self.calls, self.previous_alive, self._last = [], [], None
        self._ref = weakref.ref
        self.device = "cpu"

    def __call__(self, **kw):
        import torch

        self.previous_alive.append(self._last is not None and self._last() is not None)
        self.calls.append(kw)
        logits = torch.ones(2, 3, requires_grad=True)
        self._last = self._ref(logits)
        return _Out((logits * 2).sum(), logits)

    def train(self):
        pass

    def backward(self, loss):
        loss.backward()

    def step(self):
        pass

    def get_lr(self):
        return [0.1]


class _Dist:
    class ReduceOp:
        MAX = SUM = None

    def all_reduce(self, t, op=None):
        pass


def test_the_training_loop_has_no_kv_cache_and_drops_each_output_before_the_next(assets_packed):
    from workloads.causal_lm import data as data_mod
    from workloads.causal_lm.trainer import RunState, Trainer

    cfg = parse(workload(train={"max_steps": 2, "micro_batch": 1, "grad_accum": 3, "seq_len": 4}))
    trainer = Trainer.__new__(Trainer)
    trainer.cfg, trainer.engine, trainer.packed, trainer.total_steps = cfg, _Engine(), assets_packed, 2
    trainer.dist, trainer.rank, trainer.world, trainer.device = _Dist(), 1, 1, "cpu"
    trainer.reports = False  # not a node's first process: no progress lines
    trainer.order, trainer.state = data_mod.BlockOrder(len(assets_packed.train), 0), RunState()
    trainer.step_times, trainer.memory_estimate, trainer.n_params = [], None, 10
    assert trainer.train() == "done"
    assert len(trainer.engine.calls) == 6 and all(c.get("use_cache") is False for c in trainer.engine.calls)
    assert not any(trainer.engine.previous_alive)


@pytest.fixture
def assets_packed():
    import torch

    from workloads.causal_lm.data import Packed

    return Packed(train=torch.arange(64).view(16, 4), eval=torch.arange(0), tokens=64)


def test_calibration_reports_the_estimate_beside_the_allocator_peak(capsys):
    from workloads.causal_lm.trainer import RunState, Trainer

    trainer = Trainer.__new__(Trainer)
    trainer.memory_estimate, trainer.rank, trainer.total_steps = 10 * GIB, 0, 100
    trainer.state = RunState(step=3)
    metrics = trainer._calibration(int(11.5 * GIB))
    assert metrics == {"mem_estimate_gb": round(10 * GIB / 1e9, 2), "mem_peak_over_estimate": 1.15}
    assert "estimated 10.00 GiB allocated at the peak, torch.cuda.max_memory_allocated 11.50 GiB" in \
        capsys.readouterr().out


ZERO3_LOAD = r"""
import json, os, sys, torch
sys.path.insert(0, sys.argv[1])
from workloads.causal_lm.config import parse
from workloads.causal_lm import loading
from workloads.causal_lm.trainer import ds_config, init_distributed
cfg = parse({"model": sys.argv[2], "data": "d", "deepspeed": {"zero_stage": int(sys.argv[3])},
             "train": {"max_steps": 1, "gradient_checkpointing": True}})
init_distributed()
model = loading.model(cfg, loading.model_config(cfg), ds_config(cfg, "fp32"), "fp32")
print(json.dumps({"partitioned": all(hasattr(p, "ds_id") for p in model.parameters()),
                  "checkpointing": any(getattr(m, "gradient_checkpointing", False) for m in model.modules())}))
"""


@pytest.mark.parametrize("stage", [2, 3])
def test_zero3_builds_the_model_partitioned_and_checkpointing_is_switched_on(tmp_path, stage):
    from tiny_lm import make_model

    model_dir = make_model(tmp_path / "model")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    out = subprocess.run([sys.executable, "-c", ZERO3_LOAD, str(REPO), str(model_dir), str(stage)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"partitioned": stage == 3, "checkpointing": True}


def test_zero2_flattens_on_the_cpu_when_the_gpu_has_no_room():
    from workloads.causal_lm.memory import estimate_for

    shape, setup = shape_of(N, L), est.Setup(2, "bf16", 8, 1, 512, offload_optimizer=True, checkpointing=True)
    roomy = estimate_for(setup, shape, 80 * GIB)
    tight = estimate_for(setup, shape, 24 * GIB)
    assert roomy.startup == 4 * N and tight.startup == 2 * N          # weights (+ their flat copy)
    assert tight.host_startup - roomy.host_startup == 8 * 2 * N       # each rank: weights and copy in RAM


def test_the_table_in_the_docs_is_the_plan_commands_output():
    from workloads.causal_lm.plan import table

    doc = (REPO / "docs" / "causal-lm.md").read_text()
    assert "\n".join(table()) in doc, "regenerate it: python -m workloads.causal_lm.plan"


def test_a_model_that_is_not_llama_like_is_estimated_and_says_so():
    from transformers import GPT2Config

    shape = model_shape(GPT2Config(n_embd=768, n_layer=12, n_head=12))
    assert shape.params == 124_439_808 and not shape.gated_mlp and shape.intermediate == 4 * 768
    assert "approximate: gpt2 is not Llama-like" in est.breakdown(est.estimate(est.Setup(2, "bf16", 1, 1, 512), shape))
