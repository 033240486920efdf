"""Kept for scripts written against earlier versions: use `from tether.hf import TetherCallback`."""

from tether.hf import TetherCallback, resume_checkpoint  # noqa: F401
