"""Signals to a workload: only to processes that said they handle them (agent.progress
registers in control/listeners/), and stack dumps of a hung one."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List

from .paths import JobDir, remove_inside


def listeners(job: JobDir, pgid: int, signame: str) -> List[int]:
    """Live pids in the workload's process group that registered for signame."""
    folder = job.control / "listeners"
    pids = []
    if not folder.is_dir():
        return pids
    for p in folder.iterdir():
        if not p.name.isdigit():
            continue
        try:
            info = json.loads(p.read_text())
            pid = int(info["pid"])
            if signame in info.get("signals", []) and os.getpgid(pid) == pgid:
                pids.append(pid)
        except (OSError, ValueError, KeyError, ProcessLookupError):
            continue
    return sorted(pids)


def kill_stale_workload(job: JobDir, pgid: object) -> bool:
    """Kills the process group of a workload left over from a dead agent, if it is this
    job's (its environment names the job folder: a reused pid is never touched). True if so."""
    if not isinstance(pgid, int) or isinstance(pgid, bool) or pgid <= 1:
        return False
    try:
        environ = Path(f"/proc/{pgid}/environ").read_bytes()
    except OSError:
        return False
    if f"TETHER_JOB_DIR={job.path}".encode() not in environ.split(b"\0"):
        return False
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def clear_listeners(job: JobDir) -> None:
    remove_inside(job.control / "listeners", job.control, anchor=job.path)


def send(pids: List[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def group_pids(pgid: int) -> List[int]:
    """Every process in the group (Linux /proc; empty elsewhere)."""
    out = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) == pgid:
                out.append(int(entry.name))
        except (ProcessLookupError, PermissionError):
            continue
    return sorted(out)


_STATES = {"R": "running", "S": "sleeping", "D": "in uninterruptible sleep (waiting on a disk, a network "
           "file system or a driver)", "T": "stopped (by SIGSTOP or a debugger)", "t": "stopped by a debugger",
           "Z": "a zombie (it has exited)", "I": "idle"}


def process_state(pid: int) -> str:
    """The kernel's one-letter state of pid (/proc/<pid>/stat), or "?"."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"


def dump_stacks(job: JobDir, pgid: int, dest: Path, wait_s: float = 2.0) -> str:
    """Python stacks of a hung workload into dest: py-spy when installed, else the
    faulthandler hook agent.progress registered (SIGUSR2). Each process's state heads its
    part; one that cannot run (stopped, in D state) is said to be so rather than waited for.
    Returns how they were taken."""
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=os.path.dirname(sys.executable))
    pids = listeners(job, pgid, "SIGUSR2") or group_pids(pgid)
    states = {pid: process_state(pid) for pid in pids}
    blocked = {pid for pid, s in states.items() if s in ("T", "t", "D")}
    if pids and blocked == set(pids):
        with open(dest, "w") as out:
            for pid in pids:
                out.write(f"== pid {pid}: {_STATES.get(states[pid], states[pid])}\n"
                          f"   its Python stacks cannot be taken while it does not run"
                          + (f" (kill -CONT {pid} lets it run again)\n" if states[pid] in "Tt" else "\n"))
        return "state-only"
    if spy:
        with open(dest, "w") as out:
            for pid in pids:
                out.write(f"== pid {pid} (py-spy dump; {_STATES.get(states[pid], states[pid])})\n")
                out.flush()
                if pid in blocked:
                    out.write("   skipped: it does not run\n")
                    continue
                subprocess.run([spy, "dump", "--pid", str(pid)], stdout=out, stderr=subprocess.STDOUT,
                               timeout=30)
        return "py-spy"
    registered = listeners(job, pgid, "SIGUSR2")
    if not registered:
        dest.write_text("no stacks: py-spy is not installed and the workload does not use agent.progress\n")
        return "none"
    sizes = {pid: _size(job.logs / f"stacks-{pid}.txt") for pid in registered}
    send(registered, signal.SIGUSR2)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and any(_size(job.logs / f"stacks-{p}.txt") == s for p, s in sizes.items()):
        time.sleep(0.05)
    time.sleep(0.1)  # let the last thread's frames land
    with open(dest, "w") as out:
        for pid in registered:
            src = job.logs / f"stacks-{pid}.txt"
            out.write(f"== pid {pid} (faulthandler)\n")
            if src.exists():
                with open(src) as f:
                    f.seek(sizes[pid])
                    out.write(f.read())
    return "faulthandler"


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except FileNotFoundError:
        return 0
