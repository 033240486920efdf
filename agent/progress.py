"""The workload side of the contract, for any Python training loop (import it as
`from tether import progress`: a project's own agent.py cannot shadow that name).

    from tether import progress
    state = load(progress.resume_path()) if progress.resume_path() else fresh()
    for step in range(state.step, total):
        loss = train_step()
        progress.report(step, loss=loss)
        if progress.checkpoint_requested() or progress.stop_requested():
            save(state, os.path.join(progress.checkpoint_dir(), f"step-{step}"))
            progress.report(step, checkpoint=f"step-{step}")   # the agent backs this one up
            if progress.stop_requested():
                break

Everything here is a no-op outside tether (no TETHER_* variables), so the same script runs
by hand. This file has no imports of its own package: tether.progress loads it by its path.
"""

from __future__ import annotations

import atexit
import faulthandler
import json
import os
import signal
import threading
import time
from typing import Any, Optional

_flags = {"checkpoint": False, "stop": False}
_installed: set = set()
_at_exit: list = []
_lock = threading.Lock()
_stacks_file = None


def _register(signame: str) -> None:
    """Tells the agent this process handles signame, so it is safe to send: the agent sends
    SIGUSR1/SIGUSR2 only to processes listed in control/listeners/ (a process that never
    installed a handler would be killed by them)."""
    job = os.environ.get("TETHER_JOB_DIR")
    if not job:
        return
    folder = os.path.join(job, "control", "listeners")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return
    path = os.path.join(folder, str(os.getpid()))
    try:
        with open(path) as f:
            names = set(json.load(f).get("signals", []))
    except (OSError, ValueError):
        names = set()
    names.add(signame)
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "w") as f:
            json.dump({"pid": os.getpid(), "signals": sorted(names)}, f)
        os.replace(tmp, path)
    except OSError:  # a full disk: unregistered, so the agent sends nothing (safe), training goes on
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _ignore_requests_at_exit() -> None:
    """While the interpreter exits it puts the default action back on the signals it handled,
    and the default of SIGUSR1/SIGUSR2 is to terminate: a checkpoint request landing then
    killed a workload that had finished (the agent saw "killed by SIGUSR1", an infra failure,
    and restarted it). From here on they are ignored; atexit runs before that reset, and the
    interpreter leaves an ignored signal ignored. (Blocked first: taking SIGUSR2 back from
    faulthandler puts its default back for a moment.)"""
    ours = {signal.SIGUSR1, signal.SIGUSR2}
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, ours)
    except (AttributeError, OSError, ValueError):
        pass
    if _stacks_file is not None:
        try:
            faulthandler.unregister(signal.SIGUSR2)
        except (ValueError, RuntimeError):
            pass
    for signum in ours:
        if signum in _installed or (signum == signal.SIGUSR2 and _stacks_file is not None):
            try:
                signal.signal(signum, signal.SIG_IGN)
            except (ValueError, OSError):
                pass


def _ignore_at_exit_once() -> None:
    if not _at_exit:
        _at_exit.append(True)
        atexit.register(_ignore_requests_at_exit)


def _install(signum: int, flag: str) -> None:
    """Handlers are installed on first use, so importing this module changes nothing."""
    if signum in _installed or threading.current_thread() is not threading.main_thread():
        return

    def handler(_sig: int, _frame: Any) -> None:
        _flags[flag] = True

    signal.signal(signum, handler)
    _ignore_at_exit_once()
    _installed.add(signum)
    _register(signal.Signals(signum).name)


def _install_stack_dump() -> None:
    """SIGUSR2 -> every thread's Python stack into logs/stacks-<pid>.txt (for hang reports)."""
    global _stacks_file
    job = os.environ.get("TETHER_JOB_DIR")
    if not job or _stacks_file is not None or threading.current_thread() is not threading.main_thread():
        return
    try:
        os.makedirs(os.path.join(job, "logs"), exist_ok=True)
        _stacks_file = open(os.path.join(job, "logs", f"stacks-{os.getpid()}.txt"), "a")
    except OSError:
        return  # a full disk: no stack dumps this time
    faulthandler.register(signal.SIGUSR2, file=_stacks_file, all_threads=True)
    _ignore_at_exit_once()
    _register("SIGUSR2")


def report(step: int, **metrics: Any) -> None:
    """Append one progress line: the step and any JSON-serialisable metrics."""
    path = os.environ.get("TETHER_PROGRESS_FILE")
    if not path:
        return
    _install_stack_dump()
    record = {"step": int(step), "time": time.time(), **metrics}
    line = json.dumps(record, default=float).encode() + b"\n"
    with _lock:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError:
            return  # a full disk: progress is dropped, training goes on
        before = None
        try:
            before = os.fstat(fd).st_size
            if os.write(fd, line) != len(line):
                raise OSError("short write")
        except OSError:
            if before is not None:  # whole lines or nothing
                try:
                    os.ftruncate(fd, before)
                except OSError:
                    pass
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
