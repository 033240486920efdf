"""Fine-tune or continue pre-training a Hugging Face causal LM with DeepSpeed ZeRO, inside the
agent's contract (progress, checkpoints on request, exact resume, export). Runs by hand too:
`python -m workloads.causal_lm --config cfg.yaml`."""
