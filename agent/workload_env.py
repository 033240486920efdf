"""What a workload is started with: its command line, its environment (the contract's
TETHER_* variables, the spec's env, the secrets) and the python shims host.python asks for."""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path
from typing import Dict, List

from .files import read_json_object, write_bytes_atomic
from .paths import JobDir
from .plan import RunPlan


def shell_argv(command: str) -> List[str]:
    shell = shutil.which("bash") or "/bin/sh"
    return [shell, "-c", command]


def take_secrets_file(job: JobDir) -> Dict[str, str]:
    """secrets.json (the Kaggle kernel and older launchers write one), deleted at once."""
    doc, _ = read_json_object(job.secrets)
    try:
        os.unlink(job.secrets)
    except FileNotFoundError:
        pass
    return {str(k): str(v) for k, v in (doc or {}).items()}


def child_env(job: JobDir, plan: RunPlan, runtime_dir: Path, secrets: Dict[str, str], resume: str,
              attempt: int) -> Dict[str, str]:
    env = dict(os.environ)
    env.update(plan.env)
    env.update(secrets)
    env.update(
        TETHER_JOB_ID=plan.job_id,
        TETHER_JOB_DIR=str(job.path),
        TETHER_CHECKPOINT_DIR=str(job.checkpoints),
        TETHER_OUTPUT_DIR=str(job.outputs),
        TETHER_PROGRESS_FILE=str(job.progress),
        TETHER_RESUME_FROM=resume,
        TETHER_ATTEMPT=str(attempt),
        PYTHONUNBUFFERED=env.get("PYTHONUNBUFFERED", "1"),
    )
    # The shipped runtime on the path, so `from agent import progress` just works.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(runtime_dir), env.get("PYTHONPATH")) if p)
    front = ([str(job.python_shims)] if plan.python else []) + plan.path_prepend
    if front:
        env["PATH"] = os.pathsep.join(front + [env.get("PATH", "")])
    return env


def write_python_shims(folder: Path, python: str) -> None:
    """`python`, `python3`, `pip` and `pip3` that run host.python, as a venv's activation would:
    a bare `python` in run: or setup: must not find another interpreter (one without torch)."""
    folder.mkdir(parents=True, exist_ok=True)
    quoted = shlex.quote(python)
    for name, tail in (("python", ""), ("python3", ""), ("pip", " -m pip"), ("pip3", " -m pip")):
        write_bytes_atomic(folder / name, f'#!/bin/sh\nexec {quoted}{tail} "$@"\n'.encode(), mode=0o755)


def runtime_dir() -> Path:
    """The folder this agent package was loaded from (runtime/<version>/)."""
    return Path(__file__).resolve().parent.parent
