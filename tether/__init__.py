"""The names a training script imports, chosen so no project shadows them (a project's own
`agent.py` or `agent/` is common; `tether` is this tool's name):

    from tether.progress import report, checkpoint_requested, stop_requested, resume_path
    from tether.hf import TetherCallback, resume_checkpoint     # Hugging Face Trainer scripts

The agent's runtime puts this package on the workload's PYTHONPATH; `pip install tether` puts
it on the laptop's, where every call does nothing (no TETHER_* variables).
"""
