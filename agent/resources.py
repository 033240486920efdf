"""What the host has left: CPU, RAM, disk, GPUs. psutil when present, /proc otherwise."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Optional

try:  # psutil is optional: hosts may have only a bare system Python
    import psutil  # type: ignore
except ImportError:  # pragma: no cover - exercised on bare hosts
    psutil = None


def _meminfo() -> Dict[str, int]:
    out: Dict[str, int] = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                key, _, rest = line.partition(":")
                out[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return out


def host_sample(disk_path: Path) -> Dict[str, Any]:
    sample: Dict[str, Any] = {}
    try:
        du = shutil.disk_usage(disk_path)
        sample["disk_free_gb"] = round(du.free / 1e9, 2)
        sample["disk_total_gb"] = round(du.total / 1e9, 2)
    except OSError:
        pass
    try:
        sample["load_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    if psutil is not None:
        vm = psutil.virtual_memory()
        sample["ram_used_gb"] = round((vm.total - vm.available) / 1e9, 2)
        sample["ram_total_gb"] = round(vm.total / 1e9, 2)
        sample["cpu_percent"] = psutil.cpu_percent(interval=None)
    else:
        mi = _meminfo()
        if "MemTotal" in mi:
            sample["ram_total_gb"] = round(mi["MemTotal"] / 1e9, 2)
            sample["ram_used_gb"] = round((mi["MemTotal"] - mi.get("MemAvailable", 0)) / 1e9, 2)
    gpus = gpu_sample()
    if gpus is not None:
        sample["gpus"] = gpus
    return sample


def process_tree_rss_mb(pid: Optional[int]) -> Optional[float]:
    if pid is None or psutil is None:
        return None
    try:
        proc = psutil.Process(pid)
        procs = [proc] + proc.children(recursive=True)
        return round(sum(p.memory_info().rss for p in procs) / 1e6, 1)
    except psutil.Error:
        return None


_GPU_FIELDS = ("index", "name", "utilization.gpu", "memory.used", "memory.total", "temperature.gpu")


def gpu_sample(timeout: float = 5.0) -> Optional[List[Dict[str, Any]]]:
    """One dict per GPU from nvidia-smi, or None on a host without it."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, f"--query-gpu={','.join(_GPU_FIELDS)}", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=timeout, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    gpus = []
    for line in out.strip().splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != len(_GPU_FIELDS):
            continue
        gpu: Dict[str, Any] = {"index": int(cells[0]) if cells[0].isdigit() else len(gpus), "name": cells[1]}
        for key, cell in zip(("util_percent", "mem_used_mb", "mem_total_mb", "temp_c"), cells[2:]):
            try:
                gpu[key] = float(cell)
            except ValueError:
                gpu[key] = None
        gpus.append(gpu)
    return gpus
