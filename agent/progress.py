"""The workload side of the contract, for any Python training loop.

    from agent import progress
    start = progress.resume_step()            # or load your checkpoint from resume_path()
    for step in range(start, total):
        loss = train_step()
        progress.report(step, loss=loss)
        if step % 500 == 0 or progress.checkpoint_requested():
            save(os.path.join(progress.checkpoint_dir(), f"step-{step}"))
            progress.report(step, checkpoint=f"step-{step}")
        if progress.stop_requested():
            break

Everything here is a no-op outside tether (no TETHER_* variables), so the same script runs
by hand.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from typing import Any, Optional

_flags = {"checkpoint": False, "stop": False}
_installed: set = set()
_lock = threading.Lock()


def _install(signum: int, flag: str) -> None:
    """Handlers are installed on first use, so importing this module changes nothing."""
    if signum in _installed or threading.current_thread() is not threading.main_thread():
        return

    def handler(_sig: int, _frame: Any) -> None:
        _flags[flag] = True

    signal.signal(signum, handler)
    _installed.add(signum)


def report(step: int, **metrics: Any) -> None:
    """Append one progress line: the step and any JSON-serialisable metrics."""
    path = os.environ.get("TETHER_PROGRESS_FILE")
    if not path:
        return
    record = {"step": int(step), "time": time.time(), **metrics}
    line = json.dumps(record, default=float).encode() + b"\n"
    with _lock:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def checkpoint_requested() -> bool:
    """True once after the agent asked for a checkpoint (SIGUSR1)."""
    _install(signal.SIGUSR1, "checkpoint")
    asked, _flags["checkpoint"] = _flags["checkpoint"], False
    return asked


def stop_requested() -> bool:
    """True after SIGTERM: checkpoint and exit within stop.grace_s."""
    _install(signal.SIGTERM, "stop")
    return _flags["stop"]


def checkpoint_dir() -> str:
    path = os.environ.get("TETHER_CHECKPOINT_DIR") or "checkpoints"
    os.makedirs(path, exist_ok=True)
    return path


def output_dir() -> str:
    path = os.environ.get("TETHER_OUTPUT_DIR") or "outputs"
    os.makedirs(path, exist_ok=True)
    return path


def resume_path() -> Optional[str]:
    """The checkpoint to resume from, or None on a fresh start."""
    return os.environ.get("TETHER_RESUME_FROM") or None


def attempt() -> int:
    return int(os.environ.get("TETHER_ATTEMPT") or 0)
