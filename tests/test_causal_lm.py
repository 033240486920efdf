"""The DeepSpeed causal-LM workload on the CPU: a tiny Llama built from a config, a tokenizer
built here, real DeepSpeed (ZeRO 0/2/3, 1 and 2 processes under torchrun)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import launched_id, status_json, wait_for, wait_state
from tiny_lm import huge_model_config

REPO = Path(__file__).resolve().parent.parent


def by_hand(workdir: Path, cfg: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m workloads.causal_lm --config` as a user runs it, outside tether."""
    (workdir / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env["PYTHONPATH"] = str(REPO)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return subprocess.run([sys.executable, "-m", "workloads.causal_lm", "--config", "cfg.yaml"],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)


def config(assets: Path, **over) -> dict:
    cfg = {"model": str(assets / "model"), "data": str(assets / "data" / "train.jsonl"),
           "deepspeed": {"zero_stage": 2},
           "train": {"max_steps": 10, "micro_batch": 4, "grad_accum": 2, "lr": 0.003, "seq_len": 32, "warmup": 2}}
    for k, v in over.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    return cfg


@pytest.mark.parametrize("stage", [0, 2, 3])
@pytest.mark.parametrize("procs", [1, 2])
def test_loss_decreases(assets, tmp_path, stage, procs):
    r = by_hand(tmp_path, config(assets, deepspeed={"zero_stage": stage}, procs=procs))
    assert r.returncode == 0, r.stderr[-3000:]
    record = json.loads((tmp_path / "outputs" / "training.json").read_text())
    losses = [loss for _, loss in record["losses"]]
    assert record["processes"] == procs and record["steps"] == 10
    assert losses[-1] < 0.7 * losses[0], losses
    assert record["tokens_seen"] == 10 * 4 * 2 * procs * 32
    assert (tmp_path / "outputs" / "model" / "model.safetensors").exists()


def test_exported_model_loads_generates_and_matches_the_engine(assets, tmp_path):
    r = by_hand(tmp_path, config(assets, deepspeed={"zero_stage": 3}, train={"max_steps": 30}))
    assert r.returncode == 0, r.stderr[-3000:]
    code = f"""
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained("{tmp_path}/outputs/model")
tok = AutoTokenizer.from_pretrained("{tmp_path}/outputs/model")
probe = torch.load("{tmp_path}/outputs/probe.pt")
with torch.no_grad():
    diff = (model(input_ids=probe["input_ids"]).logits - probe["logits"]).abs().max().item()
ids = tok("the quick", return_tensors="pt").input_ids
print(diff)
print(tok.decode(model.generate(ids, max_new_tokens=7, do_sample=False)[0]))
"""
    # A clean interpreter without tether on the path: the export stands alone.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd="/")
    assert out.returncode == 0, out.stderr[-2000:]
    diff, text = out.stdout.strip().splitlines()[-2:]
    assert float(diff) < 1e-5
    assert text.startswith("the quick brown fox jumps over the lazy dog")


@pytest.mark.parametrize("mistake, expected", [
    ({"data": "missing.jsonl"}, "workload.data: missing.jsonl does not exist"),
    ({"data": "EMPTY"}, "has no text"),
    ({"model": "NOCONFIG"}, "has no config.json"),
    ({"deepspeed": {"zero_stage": 2, "offload_param": "cpu"}}, "offload_param: cpu needs zero_stage 3"),
    ({"deepspeed": {"zero_stage": 5}}, "zero_stage: 5 is not a ZeRO stage"),
    ({"train": {"max_steps": 10, "epochs": 1}}, "give exactly one of max_steps or epochs"),
    ({"train": {"max_stepz": 10}}, "workload.train.max_stepz: unknown key; did you mean 'max_steps'?"),
    ({"train": {"seq_len": 100000}}, "fewer than train.seq_len=100000"),
])
def test_bad_inputs_fail_before_training(assets, tmp_path, mistake, expected):
    if mistake.get("data") == "EMPTY":
        (tmp_path / "empty.jsonl").write_text("\n")
        mistake = {"data": str(tmp_path / "empty.jsonl")}
    if mistake.get("model") == "NOCONFIG":
        (tmp_path / "nocfg").mkdir()
        mistake = {"model": str(tmp_path / "nocfg")}
    cfg = config(assets, **mistake)
    if "max_stepz" in str(mistake):
        cfg["train"].pop("max_steps")
    r = by_hand(tmp_path, cfg)
    assert r.returncode == 2, r.stderr[-2000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and expected in errors[0], r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "checkpoints").exists()  # nothing started


def test_a_model_that_cannot_fit_names_settings_that_would(assets, tmp_path):
    big = huge_model_config(tmp_path / "big")
    r = by_hand(tmp_path, config(assets, model=str(big), deepspeed={"zero_stage": 0}))
    assert r.returncode == 2, r.stderr[-2000:]
    line = [x for x in r.stderr.splitlines() if x.startswith("error: ")][0]
    assert "B parameters) needs about" in line and "GiB of host RAM" in line
    assert "no ZeRO stage, offload or micro batch fits" in line  # 70B does not fit in 24 GB


def test_memory_check_suggests_what_fits(assets):
    """A 1.1B model, ZeRO-0, one 16 GiB GPU: too big; the message names what would fit."""
    from transformers import LlamaConfig

    from workloads.causal_lm.config import ConfigError, parse
    from workloads.causal_lm.memory import check_fits

    hf = LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                     num_attention_heads=16, num_key_value_heads=4)
    cfg = parse(config(assets, deepspeed={"zero_stage": 0}, procs=1))
    gib = 1024 ** 3
    with pytest.raises(ConfigError) as err:
        check_fits(cfg, hf, 1, True, override=(16 * gib, 200 * gib))
    text = str(err.value)
    assert "1.12B parameters" in text and "GiB per GPU (free: 16.0)" in text
    assert "settings that would fit:" in text and "offload_param cpu" in text
    need = check_fits(cfg, hf, 1, True, override=(80 * gib, 200 * gib))  # an 80 GB GPU: fits
    assert need.device_bytes > 16 * 1.1e9


def test_lora_and_a_saved_dataset_folder(assets, tmp_path):
    import datasets

    datasets.Dataset.from_dict({"body": [json.loads(x)["text"] for x in
                                         (assets / "data" / "train.jsonl").read_text().splitlines()]}
                               ).save_to_disk(str(tmp_path / "ds"))
    cfg = config(assets, data=str(tmp_path / "ds"), text_field="body", lora={"r": 4, "alpha": 8},
                 train={"max_steps": 8, "lr": 0.01})
    r = by_hand(tmp_path, cfg)
    assert r.returncode == 0, r.stderr[-3000:]
    saved = json.loads((tmp_path / "outputs" / "model" / "config.json").read_text())
    assert saved["model_type"] == "llama"
    assert not (tmp_path / "outputs" / "model" / "adapter_config.json").exists()  # merged


@pytest.mark.timeout(1500)  # three DeepSpeed runs (reference, stopped, resumed) beside the netns tests in CI
def test_stop_and_resume_under_the_agent_matches_an_uninterrupted_run(assets, tether, project, tmp_path):
    """SIGTERM at step k (tether stop), tether resume, run to the end: the same losses as a run
    never stopped. On the CPU in fp32 the same operations run in the same order, so the
    sequence matches to float32 rounding (asserted at 1e-5 relative)."""
    # Long enough that `tether stop` lands well before the end even on a fast machine.
    train = {"max_steps": 80, "micro_batch": 4, "grad_accum": 2, "lr": 0.003, "seq_len": 32, "warmup": 2}
    reference = tmp_path / "reference"
    reference.mkdir()
    r = by_hand(reference, config(assets, train=train))
    assert r.returncode == 0, r.stderr[-3000:]
    expected = json.loads((reference / "outputs" / "training.json").read_text())["losses"]

    root = tmp_path / "root"
    spec = project(f"""
        name: lm
        host: {{provider: local, root: {root}}}
        workload:
          kind: causal-lm
          model: {assets / 'model'}
          data: {assets / 'data' / 'train.jsonl'}
          deepspeed: {{zero_stage: 2}}
          train: {json.dumps(train)}
        heartbeat: {{every_s: 0.5, stall_after_s: 600}}
        backup: {{every_min: 10}}
        stop: {{grace_s: 60}}
    """)
    job = launched_id(tether("launch", spec))
    # DeepSpeed's start took over 2 minutes once, at a load of 7 on CI's two cores.
    wait_for(lambda: (status_json(tether, job).get("step") or 0) >= 4, 400, what="step 4")
    assert tether("stop", job).exit_code == 0
    stopped = status_json(tether, job)
    assert stopped["state"] == "STOPPED"
    backups = json.loads(tether("backups", job, "--json").stdout)
    assert backups and backups[-1]["verified"]
    k = backups[-1]["step"]

    assert tether("resume", job).exit_code == 0
    done = wait_state(tether, job, "SUCCEEDED", timeout=600)
    assert done["step"] == 80
    jd = root / "jobs" / job
    got = json.loads((jd / "outputs" / "training.json").read_text())["losses"]
    assert [s for s, _ in got] == list(range(1, 81))
    for (s1, a), (s2, b) in zip(expected, got):
        assert s1 == s2 and abs(a - b) <= 1e-5 * abs(a), (s1, a, b)
    log = (jd / "logs" / "workload.log").read_text()
    assert f"at step {k}" in log
    progress_steps = [json.loads(x)["step"] for x in (jd / "progress.jsonl").read_text().splitlines()
                      if "loss" in json.loads(x)]
    assert progress_steps[progress_steps.index(k) + 1:][:1] != [1]  # the counter continued


TRAINER_SCRIPT = """
import os, signal, sys, threading
from agent import progress
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments
from datasets import Dataset
from workloads.hf_callback import TetherCallback

model_dir = sys.argv[1]
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir)
texts = ["the quick brown fox jumps over the lazy dog"] * 64
ds = Dataset.from_dict(tok(texts)).map(lambda b: {"labels": b["input_ids"]}, batched=True)

class StopAfter(TetherCallback):
    def on_step_end(self, args, state, control, **kw):
        if state.global_step == 6:  # what `tether stop` does: SIGTERM to the workload
            os.kill(os.getpid(), signal.SIGTERM)
        return super().on_step_end(args, state, control, **kw)

args = TrainingArguments(output_dir=progress.checkpoint_dir(), per_device_train_batch_size=4, max_steps=40,
                         logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, learning_rate=0.01)
Trainer(model=model, args=args, train_dataset=ds, callbacks=[StopAfter()]).train()
print("trainer returned", flush=True)
"""


def test_hf_trainer_callback_reports_and_stops_on_request(assets, tmp_path):
    (tmp_path / "t.py").write_text(TRAINER_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(REPO), TETHER_JOB_DIR=str(tmp_path),
               TETHER_PROGRESS_FILE=str(tmp_path / "progress.jsonl"),
               TETHER_CHECKPOINT_DIR=str(tmp_path / "ck"), TETHER_OUTPUT_DIR=str(tmp_path / "out"))
    r = subprocess.run([sys.executable, "t.py", str(assets / "model")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "trainer returned" in r.stdout
    lines = [json.loads(x) for x in (tmp_path / "progress.jsonl").read_text().splitlines()]
    losses = [x for x in lines if "loss" in x]
    assert [x["step"] for x in losses][:3] == [1, 2, 3]
    assert max(x["step"] for x in losses) <= 7  # stopped at the step after the request
    announced = [x["checkpoint"] for x in lines if "checkpoint" in x]
    assert announced == ["checkpoint-6"]
    assert (tmp_path / "ck" / "checkpoint-6").is_dir()
