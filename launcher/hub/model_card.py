"""The README.md published with a model, built and checked by huggingface_hub's ModelCard:
metadata the Hub reads, then what a person wants to know (base model, data, settings,
results, hardware, cost, how to load it). training.json came from the host: its values are
made one-line table cells, nothing more."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional

from launcher import __version__
from launcher.errors import UsageError
from launcher.registry import JobRecord


def _is_hub_id(name: str) -> bool:
    return name.count("/") == 1 and not name.startswith((".", "/", "~"))


def generate(repo: str, rec: JobRecord, training: Optional[Dict[str, Any]], spend: Optional[float]) -> str:
    try:
        from huggingface_hub import ModelCard, ModelCardData
    except ImportError:
        raise UsageError("publishing needs huggingface_hub", "pip install 'tether[hub]'") from None
    cfg = (training or {}).get("config") or {}
    base = cfg.get("model")
    data = ModelCardData(library_name="transformers", pipeline_tag="text-generation",
                         tags=["tether", "causal-lm", "deepspeed"],
                         base_model=base if isinstance(base, str) and _is_hub_id(base) else None)
    lines = [f"# {repo.split('/')[-1]}", "",
             f"Trained with tether {__version__}, job `{rec.id}` (`{rec.name}`).", ""]
    if training:
        ds, tr = cfg.get("deepspeed") or {}, cfg.get("train") or {}
        rows = [
            ("base model", base or "-"), ("data", cfg.get("data", "-")),
            ("steps", training.get("steps")), ("tokens seen", training.get("tokens_seen")),
            ("final loss", _num(training.get("final_loss"))), ("best loss", _num(training.get("best_loss"))),
            ("precision", training.get("precision")), ("ZeRO stage", ds.get("zero_stage")),
            ("processes", training.get("processes")),
            ("micro batch x grad accum x seq len", f"{tr.get('micro_batch')} x {tr.get('grad_accum')} x {tr.get('seq_len')}"),
            ("learning rate", tr.get("lr")), ("schedule", tr.get("schedule")),
            ("wall time", f"{training.get('wall_time_s', 0) / 3600:.2f} h"),
            ("hardware", _hardware(training.get("hardware") or {})),
        ]
        if cfg.get("lora"):
            rows.append(("LoRA", json.dumps(cfg["lora"])))
        if spend is not None:
            rows.append(("cost", f"${spend:.2f}"))
        lines += ["## Training", "", "| | |", "|---|---|"] + [f"| {k} | {_cell(v)} |" for k, v in rows] + [""]
    lines += ["## Use it", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
              f'model = AutoModelForCausalLM.from_pretrained("{repo}")',
              f'tokenizer = AutoTokenizer.from_pretrained("{repo}")', "```", ""]
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)))


def _cell(value: Any) -> str:
    return " ".join(str(value).split()).replace("|", "\\|")[:200]


def _num(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _hardware(hw: Dict[str, Any]) -> str:
    if hw.get("gpus"):
        return f"{len(hw['gpus'])} x {hw['gpus'][0]}"
    return f"CPU ({hw.get('cpu_count', '?')} cores)"


def read_training(folder: Path) -> Optional[Dict[str, Any]]:
    for p in (folder / "training.json", folder.parent / "training.json"):
        if p.is_file():
            return json.loads(p.read_text())
    return None
