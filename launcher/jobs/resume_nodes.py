"""`tether resume JOB --on a,b` for a job on N nodes, when its hosts are gone: N hosts of your
own take over, node K from node K's own backup (its ZeRO shards) of the newest step that every
node has in the job's mirror: this laptop's (mirrors/<job-id>/node-K/) or the Hub's (node-K/ in
the repo). The step is chosen here, before anything is started on the new hosts."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Mapping, Optional

from rich.console import Console

from agent.paths import node_prefix

from launcher.errors import UsageError
from launcher.hub import backups as hub_mirror
from launcher.registry import JobRecord
from launcher.settings import Places
from launcher.spec_nodes import ONE_NODE, nodes_problem
from launcher.text import inert
from launcher.transport.agent_client import AgentClient

Bring = Callable[[AgentClient, str, int], None]


def node_addresses(job_id: str, nodes: int, given: str) -> List[str]:
    """--on's comma-separated addresses: one per node, each a host of your own (ssh)."""
    addresses = [a.strip() for a in given.split(",") if a.strip()]
    for a in addresses:
        if a in ONE_NODE:  # rented providers, local, kaggle, colab: as at launch
            raise UsageError(str(nodes_problem(a, nodes, addresses)), f"tether resume {job_id} --on HOST,HOST")
    if len(addresses) != nodes:
        raise UsageError(f"job {job_id} runs on {nodes} nodes: --on needs {nodes} addresses, one per node "
                         f"(got {len(addresses)})", "e.g. --on gpu-a,gpu-b (comma-separated)")
    return addresses


def node_backup_bringer(rec: JobRecord, nodes: int, hub_repo: Optional[str], places: Places,
                        environ: Mapping[str, str], console: Console) -> Bring:
    """How node K's backup of the common step reaches new host K: from the Hub (fetched by the
    host itself, or through this laptop when it has no huggingface_hub), or from this laptop's
    mirror. Raises NoBackupError now when no step is held by every node."""
    from launcher.transfer.laptop_backups import local_backups, mirror_dir, send_backup
    from launcher.transfer.node_backups import common_mirrored

    def send(client: AgentClient, job_dir: str, folder: Path, k: int) -> None:
        got = send_backup(client, job_dir, folder)
        console.print(f"node {k}: brought backup {inert(got.get('backup'))} (step {inert(got.get('step'))}) "
                      "to the new host")

    hub = hub_mirror.for_job(hub_repo, environ)
    if hub is None:
        held = [[p.name for p in local_backups(places, rec, k)] for k in range(nodes)]
        step, names = common_mirrored(held, "this laptop's mirror")
        console.print(f"every node has step {step} mirrored to this laptop: each node continues from it")
        folders = [mirror_dir(places, rec, k) / "backups" / name for k, name in enumerate(names)]
        return lambda client, job_dir, k: send(client, job_dir, folders[k], k)

    prefixes = [node_prefix({"rank": k, "count": nodes}) for k in range(nodes)]
    step, _ = hub_mirror.common_step(hub, prefixes)
    console.print(f"every node has step {step} in hf://{hub.repo}: each node continues from it")

    def from_hub(client: AgentClient, job_dir: str, k: int) -> None:
        where = {"prefix": prefixes[k], "step": step}
        got = hub_mirror.fetch(client, job_dir, hub, console, where)
        if got is not None:
            console.print(f"node {k}: the new host fetched backup {inert(got.get('name'))} (step "
                          f"{inert(got.get('step'))}) from hf://{hub.repo}/{prefixes[k]}")
            return
        console.print(f"node {k}: the new host has no huggingface_hub yet: the backup comes through this laptop")
        send(client, job_dir, hub_mirror.fetch_to_laptop(hub, mirror_dir(places, rec, k) / "hub", console, where), k)

    return from_hub
