"""For users who bring their own Hugging Face Trainer script: one callback connects it to the
agent.

    from workloads.hf_callback import TetherCallback
    args = TrainingArguments(output_dir=progress.checkpoint_dir(), ...)   # checkpoints where
    trainer = Trainer(..., callbacks=[TetherCallback()])                 # the agent backs up
    trainer.train(resume_from_checkpoint=progress.resume_path())

It reports every log (loss, learning rate, ...) as progress, saves a checkpoint when the agent
asks (SIGUSR1) and announces every checkpoint the Trainer writes, and on SIGTERM (tether stop,
preemption, a deadline) saves and stops the run at the next step.
"""

from __future__ import annotations

import os

from transformers import TrainerCallback

from agent import progress


class TetherCallback(TrainerCallback):
    def on_train_begin(self, args, state, control, **kwargs):
        progress.checkpoint_requested()  # installs the signal handlers in the main thread
        progress.stop_requested()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and state.is_world_process_zero:
            metrics = {k: v for k, v in logs.items() if isinstance(v, (int, float))}
            if state.max_steps:  # tether status and the dashboard show the ETA to it
                metrics["max_steps"] = state.max_steps
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
