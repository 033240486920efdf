"""The training loop: DeepSpeed engine, progress, checkpoints on schedule and on request,
exact resume (model, optimizer, scheduler, step, RNG, data position)."""

from __future__ import annotations

import json
import math
import os
import random
import resource
import shutil
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import torch

from tether import progress

from . import data as data_mod
from .config import CausalLMConfig, ConfigError

PEAK_TFLOPS = {"H200": 989, "H100": 989, "A100": 312, "L40S": 362, "L4": 121, "A10": 125,
               "RTX 4090": 165, "RTX 3090": 71, "T4": 65, "V100": 125}


@dataclass
class Dirs:
    checkpoints: str
    outputs: str
    resume_from: Optional[str]


@dataclass
class RunState:
    """What a checkpoint carries besides DeepSpeed's own state."""
    step: int = 0
    micro_step: int = 0
    tokens_seen: int = 0
    best_loss: Optional[float] = None
    losses: list = field(default_factory=list)   # (step, loss): for training.json and tests


def dirs_from_env() -> Dirs:
    return Dirs(checkpoints=progress.checkpoint_dir(), outputs=progress.output_dir(),
                resume_from=progress.resume_path())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_distributed() -> None:
    """Single process: the environment torchrun would have set. Then DeepSpeed's init."""
    if "RANK" not in os.environ:
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(_free_port()))
    import deepspeed
    deepspeed.init_distributed(dist_backend=None, auto_mpi_discovery=False, verbose=False)


def precision(cfg: CausalLMConfig) -> str:
    want = cfg.deepspeed.precision
    if want != "auto":
        if want in ("bf16", "fp16") and not torch.cuda.is_available():
            raise ConfigError(f"workload.deepspeed.precision: {want} needs a GPU; use auto or fp32 on the CPU")
        return want
    if not torch.cuda.is_available():
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def ds_config(cfg: CausalLMConfig, prec: str) -> Dict[str, Any]:
    ds, tr = cfg.deepspeed, cfg.train
    zero: Dict[str, Any] = {"stage": ds.zero_stage}
    if ds.offload_optimizer == "cpu":
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    if ds.offload_param == "cpu":
        zero["offload_param"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    conf: Dict[str, Any] = {
        "train_micro_batch_size_per_gpu": tr.micro_batch,
        "gradient_accumulation_steps": tr.grad_accum,
        "gradient_clipping": tr.grad_clip,
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10 ** 9,
        "wall_clock_breakdown": False,
        "bf16": {"enabled": prec == "bf16"},
        "fp16": {"enabled": prec == "fp16", "initial_scale_power": 16},
    }
    local = os.environ.get("LOCAL_WORLD_SIZE")  # torchrun's: this node's processes
    if local and int(os.environ.get("WORLD_SIZE", "1")) > int(local):
        # Several nodes, no shared disk: each node writes the model states beside its own shards.
        conf["checkpoint"] = {"use_node_local_storage": True}
    if ds.offload_optimizer == "cpu":  # DeepSpeed builds its CPU Adam for offloaded states
        conf["optimizer"] = {"type": "AdamW", "params": {"lr": tr.lr, "weight_decay": tr.weight_decay,
                                                          "betas": [0.9, 0.999], "eps": 1e-8}}
    return conf


def lr_lambda(cfg: CausalLMConfig, total_steps: int):
    tr = cfg.train

    def f(step: int) -> float:
        if tr.warmup and step < tr.warmup:
            return (step + 1) / tr.warmup
        if tr.schedule == "constant":
            return 1.0
        span = max(1, total_steps - tr.warmup)
        done = min(1.0, (step - tr.warmup) / span)
        return 0.5 * (1 + math.cos(math.pi * done)) if tr.schedule == "cosine" else 1.0 - done

    return f


def _rng_state() -> Dict[str, Any]:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    try:
        import numpy as np
        state["numpy"] = np.random.get_state()
    except ImportError:
        pass
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        import numpy as np
        np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np
        np.random.seed(seed)
    except ImportError:
        pass


class Trainer:
    def __init__(self, cfg: CausalLMConfig, dirs: Dirs, engine, tokenizer, packed: data_mod.Packed,
                 total_steps: int, prec: str, n_params: int) -> None:
        import deepspeed.comm as dist

        self.cfg, self.dirs, self.engine, self.tokenizer = cfg, dirs, engine, tokenizer
        self.packed, self.total_steps, self.prec, self.n_params = packed, total_steps, prec, n_params
        self.dist = dist
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        # Each node's first process reports: every node's agent sees the steps and the
        # checkpoints (its own ZeRO shards) it must back up.
        self.reports = int(os.environ.get("LOCAL_RANK", "0")) == 0
        self.order = data_mod.BlockOrder(len(packed.train), cfg.train.seed)
        self.state = RunState()
        self.device = engine.device
        self.started = time.time()
        self.step_times: list = []
        self.checkpoint_times: list = []
        self.memory_estimate: Optional[int] = None   # bytes torch's allocator should peak at

    # -- checkpoints ----------------------------------------------------------------------

    def save(self) -> str:
        started = time.perf_counter()
        tag = f"step-{self.state.step}"
        client = {"run_state": self.state.__dict__}
        self.engine.save_checkpoint(self.dirs.checkpoints, tag=tag, client_state=client)
        torch.save(_rng_state(), os.path.join(self.dirs.checkpoints, tag, f"rng_rank{self.rank}.pt"))
        self.dist.barrier()
        if self.reports:
            progress.report(self.state.step, checkpoint=tag)
            self._prune_checkpoints(tag)
        self.checkpoint_times.append(time.perf_counter() - started)
        return tag

    def _prune_checkpoints(self, newest: str) -> None:
        keep = max(1, self.cfg.train.keep_checkpoints)
        tags = sorted((d for d in os.listdir(self.dirs.checkpoints) if d.startswith("step-")),
                      key=lambda d: int(d.split("-")[1]))
        for old in tags[:-keep]:
            if old != newest:
                shutil.rmtree(os.path.join(self.dirs.checkpoints, old), ignore_errors=True)

    def resume(self, path: str) -> None:
        load_dir, tag = os.path.dirname(path.rstrip("/")), os.path.basename(path.rstrip("/"))
        _, client = self.engine.load_checkpoint(load_dir, tag=tag, load_optimizer_states=True,
                                                load_lr_scheduler_states=True)
        if client is None:
            raise ConfigError(f"could not load the checkpoint at {path}")
        self.state = RunState(**client["run_state"])
        rng = os.path.join(path, f"rng_rank{self.rank}.pt")
        if os.path.exists(rng):
            _set_rng_state(torch.load(rng, weights_only=False))
        if self.rank == 0:
            print(f"resumed from {path} at step {self.state.step}", flush=True)

    # -- the loop -------------------------------------------------------------------------

    def _flags(self, *values: bool) -> list:
        """Every rank's flags, OR-ed: all ranks save and stop at the same step."""
        t = torch.tensor([1.0 if v else 0.0 for v in values], device=self.device)
        self.dist.all_reduce(t, op=self.dist.ReduceOp.MAX)
        return [bool(x) for x in t.tolist()]

    def _mean(self, value: float) -> float:
        t = torch.tensor([value], device=self.device)
        self.dist.all_reduce(t, op=self.dist.ReduceOp.SUM)
        return float(t.item()) / self.world

    def train(self) -> str:
        """Runs to total_steps; 'done', or 'stopped' after a SIGTERM (checkpoint saved)."""
        tr = self.cfg.train
        tokens_per_step = tr.micro_batch * tr.grad_accum * self.world * tr.seq_len
        while self.state.step < self.total_steps:
            t0 = time.perf_counter()
            self.engine.train()
            total = 0.0
            for _ in range(tr.grad_accum):
                batch = data_mod.micro_batch(self.packed, self.order, self.state.micro_step, self.rank, self.world,
                                             tr.micro_batch).to(self.device)
                # No KV cache in training, and the logits go before backward: kept alive they
                # would also sit through the next forward.
                loss = self.engine(input_ids=batch, labels=batch, use_cache=False).loss
                self.engine.backward(loss)
                self.engine.step()
                self.state.micro_step += 1
                total += float(loss.detach().float().item())
                del loss
            loss = self._mean(total / tr.grad_accum)
            self.state.step += 1
            self.state.tokens_seen += tokens_per_step
            self.state.losses.append([self.state.step, loss])
            dt = time.perf_counter() - t0
            self.step_times.append(dt)
            metrics = self._metrics(loss, dt, tokens_per_step)
            if tr.eval_every and self.state.step % tr.eval_every == 0 and len(self.packed.eval):
                metrics["eval_loss"] = self.evaluate()
            track = metrics.get("eval_loss", loss)
            if self.state.best_loss is None or track < self.state.best_loss:
                self.state.best_loss = track
            if self.reports:
                progress.report(self.state.step, **metrics)
            due = bool(tr.save_every) and self.state.step % tr.save_every == 0
            asked, stop = self._flags(progress.checkpoint_requested(), progress.stop_requested())
            if due or asked or stop:
                self.save()
            if stop:
                return "stopped"
        return "done"

    def _metrics(self, loss: float, dt: float, tokens: int) -> Dict[str, Any]:
        recent = self.step_times[-20:]
        rate = len(recent) / sum(recent)
        m: Dict[str, Any] = {
            "loss": round(loss, 6),
            "lr": self.engine.get_lr()[0],
            "tokens_per_s": round(tokens / dt, 1),
            "samples_per_s": round(tokens / self.cfg.train.seq_len / dt, 2),
            "eta_s": round((self.total_steps - self.state.step) / rate, 1),
        }
        if torch.cuda.is_available():
            m["peak_mem_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)
            m.update(self._calibration(torch.cuda.max_memory_allocated()))
            peak = peak_tflops()
            if peak:
                m["mfu"] = round(6 * self.n_params * tokens / dt / (peak * 1e12 * self.world), 4)
        else:
            m["peak_mem_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)
        return m

    def _calibration(self, peak: int) -> Dict[str, Any]:
        """The estimate beside what the allocator measured, so the first GPU run checks the
        memory model; said once in the log after the third step, when the peak has settled."""
        if not self.memory_estimate:
            return {}
        ratio = round(peak / self.memory_estimate, 3)
        if self.rank == 0 and self.state.step == min(3, self.total_steps):
            print(f"memory check: estimated {self.memory_estimate / 2**30:.2f} GiB allocated at the peak, "
                  f"torch.cuda.max_memory_allocated {peak / 2**30:.2f} GiB (ratio {ratio})", flush=True)
        return {"mem_estimate_gb": round(self.memory_estimate / 1e9, 2), "mem_peak_over_estimate": ratio}

    @torch.no_grad()
    def evaluate(self) -> float:
        self.engine.eval()
        n = min(self.cfg.train.eval_batches, len(self.packed.eval))
        losses = []
        for i in range(n):
            batch = self.packed.eval[i:i + 1].to(self.device)
            losses.append(float(self.engine(input_ids=batch, labels=batch, use_cache=False).loss.float().item()))
        self.engine.train()
        return round(self._mean(sum(losses) / max(1, len(losses))), 6)


def peak_tflops() -> Optional[float]:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    for key, value in PEAK_TFLOPS.items():
        if key in name:
            return float(value)
    return None


def hardware() -> Dict[str, Any]:
    import deepspeed
    info: Dict[str, Any] = {"torch": torch.__version__, "deepspeed": deepspeed.__version__,
                            "cpu_count": os.cpu_count()}
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    else:
        info["device"] = "cpu"
    return info


def write_json(path: str, data: Dict[str, Any]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, default=str)
    os.replace(tmp, path)
