"""Many finished jobs over several real sshd hosts, for the dashboard's load test and bench:
one real job launched per host (its files written by a real agent), then copied under new ids
on the same host and recorded in the registry as tether would."""

from __future__ import annotations

import dataclasses
import shutil
import textwrap
import time
from pathlib import Path
from typing import Callable, List, Tuple

from scripts import COUNTER
from sshd import Sshd

from launcher.registry import Registry
from launcher.settings import places


def start_hosts(base: Path, n: int, config: Path) -> List[Sshd]:
    """n sshd servers on 127.0.0.1, reachable as the aliases fleet0..fleet<n-1>."""
    hosts = [Sshd(base / f"sshd-{i}").setup().start() for i in range(n)]
    config.write_text("".join(h.ssh_config(f"fleet{i}") for i, h in enumerate(hosts)))
    return hosts


def launch_one(base: Path, i: int, tether: Callable[..., object]) -> str:
    work = base / f"proj-{i}"
    work.mkdir(parents=True, exist_ok=True)
    (work / "train.py").write_text(COUNTER)
    (work / "job.yaml").write_text(textwrap.dedent(f"""
        name: fleet-{i}
        workdir: .
        host: {{provider: ssh, address: fleet{i}, root: {base / f'root-{i}'}}}
        run: python3 train.py 12 0.01
        heartbeat: {{every_s: 0.5}}
    """))
    r = tether("launch", work / "job.yaml")
    for line in r.stdout.splitlines():
        if line.startswith("launched job "):
            return line.split()[2]
    raise AssertionError(f"launch failed: {r!r}")


def wait_all_ended(ids: List[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        registry = Registry(places().registry)
        try:
            recs = [registry.resolve(j) for j in ids]
        finally:
            registry.close()
        if all((Path(r.job_dir) / "state.json").exists() and '"SUCCEEDED"' in (Path(r.job_dir) / "state.json").read_text()
               for r in recs):
            return
        time.sleep(0.3)
    raise AssertionError(f"the fleet's jobs did not all succeed within {timeout}s")


def copy_jobs(ids: List[str], per_host: int) -> int:
    """Each launched job copied per_host-1 times on its own host (a new id, its own folder)."""
    registry = Registry(places().registry)
    made = 0
    try:
        for job in ids:
            rec = registry.resolve(job)
            for k in range(1, per_host):
                new_id = f"{rec.id}-{k:02d}"
                folder = Path(rec.job_dir).parent / new_id
                shutil.copytree(rec.job_dir, folder, ignore=shutil.ignore_patterns("code", "agent.lock"))
                registry.add(dataclasses.replace(rec, id=new_id, job_dir=str(folder), created=rec.created - k))
                made += 1
    finally:
        registry.close()
    return made


def make_fleet(base: Path, config: Path, tether: Callable[..., object], n_hosts: int = 5,
               per_host: int = 40) -> Tuple[List[Sshd], int]:
    """The hosts (stop them when done) and how many jobs the registry now holds."""
    hosts = start_hosts(base, n_hosts, config)
    try:
        ids = [launch_one(base, i, tether) for i in range(n_hosts)]
        wait_all_ended(ids)
        return hosts, len(ids) + copy_jobs(ids, per_host)
    except BaseException:
        for h in hosts:
            h.stop()
            h.kill_sessions()
        raise
