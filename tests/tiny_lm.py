"""A tiny causal LM and tokenizer built here from a config (no downloads), and a small
repeating corpus, for the DeepSpeed workload tests."""

from __future__ import annotations

import json
from pathlib import Path

SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "a journey of a thousand miles begins with a single step",
    "all that glitters is not gold",
    "the early bird catches the worm",
]


def corpus_lines(n: int = 200):
    return [SENTENCES[i % len(SENTENCES)] for i in range(n)]


def make_tokenizer(dest: Path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(corpus_lines(), trainers.WordLevelTrainer(special_tokens=["<unk>", "<eos>", "<pad>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>", pad_token="<pad>")
    fast.save_pretrained(dest)
    return fast


def make_model(dest: Path, layers: int = 2, hidden: int = 64) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    dest.mkdir(parents=True, exist_ok=True)
    tok = make_tokenizer(dest)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=128, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, bos_token_id=None)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(dest)
    return dest


def make_data(dest: Path, n: int = 200) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "w") as f:
        for line in corpus_lines(n):
            f.write(json.dumps({"text": line}) + "\n")
    return dest


def huge_model_config(dest: Path) -> Path:
    """A config of a 70B-class model and no weights: for the memory check, which runs first."""
    from transformers import LlamaConfig

    dest.mkdir(parents=True, exist_ok=True)
    LlamaConfig(vocab_size=32000, hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
                num_attention_heads=64, num_key_value_heads=8).save_pretrained(dest)
    make_tokenizer(dest)
    return dest
