"""A Hugging Face Trainer script, connected to the agent with two names:

    from tether.hf import TetherCallback, resume_checkpoint
    trainer = Trainer(..., callbacks=[TetherCallback()])
    trainer.train(resume_from_checkpoint=resume_checkpoint())

TetherCallback reports every log (loss, learning rate, ...) as progress, saves a checkpoint
when the agent asks (SIGUSR1), announces every checkpoint the Trainer writes inside
TETHER_CHECKPOINT_DIR (so set `output_dir` there, or leave it and tether backs up what the
Trainer writes there), and on SIGTERM (tether stop, preemption, a deadline) saves and stops
at the next step. resume_checkpoint() is what to resume from: the restored `checkpoint-N`
folder, or None on a fresh start.
"""

from __future__ import annotations

import os
import re
from typing import Optional

from transformers import TrainerCallback

from . import progress

_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


def resume_checkpoint(path: Optional[str] = None) -> Optional[str]:
    """TETHER_RESUME_FROM (or path) as the Trainer wants it: a `checkpoint-N` folder itself, or
    the newest `checkpoint-N` inside it (a copy of a whole output folder), or None."""
    path = path if path is not None else progress.resume_path()
    if not path or not os.path.isdir(path):
        return None
    if _CHECKPOINT.fullmatch(os.path.basename(os.path.normpath(path))):
        return path
    found = [(int(m.group(1)), name) for name in os.listdir(path)
             if (m := _CHECKPOINT.fullmatch(name)) and os.path.isdir(os.path.join(path, name))]
    return os.path.join(path, max(found)[1]) if found else None


class TetherCallback(TrainerCallback):
    def on_train_begin(self, args, state, control, **kwargs):
        progress.checkpoint_requested()  # installs the signal handlers in the main thread
        progress.stop_requested()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and state.is_world_process_zero:
            metrics = {k: v for k, v in logs.items() if isinstance(v, (int, float))}
            if state.max_steps:
                metrics["total"] = state.max_steps
            progress.report(state.global_step, **metrics)

    def on_step_end(self, args, state, control, **kwargs):
        if progress.checkpoint_requested():
            control.should_save = True
        if progress.stop_requested():
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        path = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        root = os.environ.get("TETHER_CHECKPOINT_DIR")
        if root and os.path.isdir(path):
            rel = os.path.relpath(path, root)
            if not rel.startswith(".."):  # only what lies in the checkpoint folder is announced
                progress.report(state.global_step, checkpoint=rel)
