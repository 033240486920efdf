"""The end of a run: a probe of the trained engine's logits, the consolidated model (ZeRO-3
shards gathered) as safetensors with config, tokenizer and generation config, and
training.json for the model card. Loadable with `from_pretrained`, no tether needed."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Dict

import torch

from .trainer import Trainer, hardware, write_json


@torch.no_grad()
def probe(trainer: Trainer, out_dir: str) -> None:
    """The engine's logits on a fixed input (all ranks forward; rank 0 writes)."""
    ids = trainer.packed.train[0:1, : min(16, trainer.cfg.train.seq_len)].to(trainer.device)
    trainer.engine.eval()
    logits = trainer.engine(input_ids=ids).logits.float().cpu()
    if trainer.rank == 0:
        torch.save({"input_ids": ids.cpu(), "logits": logits}, os.path.join(out_dir, "probe.pt"))


def export(trainer: Trainer, out_dir: str) -> str:
    import deepspeed

    model_dir = os.path.join(out_dir, "model")
    module = trainer.engine.module
    gather = (deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None)
              if trainer.cfg.deepspeed.zero_stage == 3 else contextlib.nullcontext())
    with gather:
        if trainer.rank == 0:
            if trainer.cfg.lora is not None:
                module = module.merge_and_unload()  # a plain model: no peft needed to load it
            state = {k: v.detach().cpu().clone().contiguous() for k, v in module.state_dict().items()}
            os.makedirs(model_dir, exist_ok=True)
            module.save_pretrained(model_dir, state_dict=state)
            trainer.tokenizer.save_pretrained(model_dir)
            gen = getattr(module, "generation_config", None)
            if gen is not None:
                gen.save_pretrained(model_dir)
    trainer.dist.barrier()
    return model_dir


def training_record(trainer: Trainer, status: str) -> Dict[str, Any]:
    losses = trainer.state.losses
    return {
        "status": status,
        "config": trainer.cfg.to_dict(),
        "precision": trainer.prec,
        "processes": trainer.world,
        "parameters": trainer.n_params,
        "steps": trainer.state.step,
        "total_steps": trainer.total_steps,
        "final_loss": losses[-1][1] if losses else None,
        "best_loss": trainer.state.best_loss,
        "tokens_seen": trainer.state.tokens_seen,
        "dataset_tokens": trainer.packed.tokens,
        "wall_time_s": round(time.time() - trainer.started, 1),
        "hardware": hardware(),
        "losses": losses,
        "step_times_s": [round(t, 5) for t in trainer.step_times],
        "checkpoint_times_s": [round(t, 5) for t in trainer.checkpoint_times],
    }


def finish(trainer: Trainer, out_dir: str, status: str) -> None:
    if status == "done":
        probe(trainer, out_dir)
        export(trainer, out_dir)
    if trainer.rank == 0:
        write_json(os.path.join(out_dir, "training.json"), training_record(trainer, status))
