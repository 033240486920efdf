"""`python -m workloads.causal_lm [--config FILE]`: under tether the config is the job's
spec.json; by hand, a YAML/JSON file with the workload block. With more than one process it
re-executes itself under torchrun (torch's own launcher)."""

from __future__ import annotations

import argparse
import math
import os
import shlex
import shutil
import sys
import warnings

from .config import CausalLMConfig, ConfigError, load_file


def procs_for(cfg: CausalLMConfig) -> int:
    if cfg.procs != "auto":
        return int(cfg.procs)
    import torch
    return max(1, torch.cuda.device_count())


def _under_launcher() -> bool:
    return "LOCAL_RANK" in os.environ


def _exec_torchrun(procs: int, argv: list) -> None:
    from .trainer import _free_port

    torchrun = shutil.which("torchrun") or shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if torchrun is None:
        raise ConfigError("torchrun is not on PATH: install torch on the host")
    # Several nodes: the rendezvous facts tether handed this node; one node: this host alone.
    where = shlex.split(os.environ["TETHER_TORCHRUN_ARGS"]) if _nodes() > 1 else \
        [f"--master_port={_free_port()}", "--master_addr=127.0.0.1"]
    # exec keeps the pid: the agent's signals still reach this process group.
    os.execv(torchrun, [torchrun, f"--nproc_per_node={procs}", *where, "-m", "workloads.causal_lm", *argv])


def _nodes() -> int:
    """TETHER_NUM_NODES (set by tether's agent for a multi-node job; TETHER_TORCHRUN_ARGS with it)."""
    try:
        return max(1, int(os.environ.get("TETHER_NUM_NODES", "1")))
    except ValueError:
        return 1


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m workloads.causal_lm")
    ap.add_argument("--config", help="workload YAML/JSON (default: $TETHER_JOB_DIR/spec.json)")
    ap.add_argument("--checkpoint-dir", help="default: $TETHER_CHECKPOINT_DIR or ./checkpoints")
    ap.add_argument("--output-dir", help="default: $TETHER_OUTPUT_DIR or ./outputs")
    ap.add_argument("--resume-from", help="default: $TETHER_RESUME_FROM")
    args = ap.parse_args(argv)
    for name, var in (("checkpoint_dir", "TETHER_CHECKPOINT_DIR"), ("output_dir", "TETHER_OUTPUT_DIR"),
                      ("resume_from", "TETHER_RESUME_FROM")):
        if getattr(args, name):
            os.environ[var] = getattr(args, name)
    try:
        path = args.config or os.path.join(os.environ.get("TETHER_JOB_DIR", "."), "spec.json")
        cfg = load_file(path)
        procs = procs_for(cfg)
        if (procs > 1 or _nodes() > 1) and not _under_launcher():
            _exec_torchrun(procs, argv)
        return run(cfg)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2


def run(cfg: CausalLMConfig) -> int:
    warnings.filterwarnings("ignore", message=".*Failed to initialize NumPy.*")
    import torch

    from . import data, export, loading, memory
    from .shape import model_shape
    from .trainer import Trainer, dirs_from_env, ds_config, init_distributed, lr_lambda, precision, seed_everything

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, int(os.environ.get("WORLD_SIZE", "1")))))
    # Everything that can be wrong with the inputs is found before DeepSpeed starts.
    prec = precision(cfg)
    hf_config = loading.model_config(cfg)
    tokenizer = loading.tokenizer(cfg)
    texts = data.read_texts(cfg.data, cfg.text_field)
    packed = data.pack(texts, tokenizer, cfg.train.seq_len, cfg.train.eval_every > 0, cfg.data)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    per_step = cfg.train.micro_batch * cfg.train.grad_accum * world
    total_steps = cfg.train.max_steps or max(1, math.ceil(cfg.train.epochs * len(packed.train) / per_step))
    on_gpu = torch.cuda.is_available()
    shape = model_shape(hf_config, cfg.lora)
    need = memory.check_fits(cfg, hf_config, world, on_gpu, loading.memory_override(), prec, shape)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"memory: about {memory.summary(need)}", flush=True)
    dirs = dirs_from_env()  # creates the folders: only once the inputs are known to be good

    init_distributed()
    import deepspeed

    seed_everything(cfg.train.seed)
    conf = ds_config(cfg, prec)
    model = loading.model(cfg, hf_config, conf, prec)
    n_params = sum(p.numel() for p in model.parameters())
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = None
    if "optimizer" not in conf:
        optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    scheduler = (lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, total_steps)))
    engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=params, optimizer=optimizer,
                                           lr_scheduler=scheduler, config=conf)
    trainer = Trainer(cfg, dirs, engine, tokenizer, packed, total_steps, prec, n_params)
    trainer.memory_estimate = need.allocated_bytes
    if dirs.resume_from:
        trainer.resume(dirs.resume_from)
    status = trainer.train()
    export.finish(trainer, dirs.outputs, status)
    return 0


if __name__ == "__main__":
    sys.exit(main())
