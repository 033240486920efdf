"""`tether launch` of a job on several hosts (host.nodes > 1): every node prepared and synced
at once, one job folder and one agent per node, each told its rank, the node count and the
master's address and port. torch's rendezvous does the rest (agent/rendezvous.py)."""

from __future__ import annotations

import secrets as pysecrets
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Mapping, Optional, Sequence, TypeVar

from rich.console import Console

from launcher.errors import RemoteError
from launcher.hub import backups as hub_mirror
from launcher.jobs.launch_steps import Launched, _payload, _record, _sync, _undo
from launcher.registry import JobRecord, Registry
from launcher.settings import Places
from launcher.spec import LoadedSpec
from launcher.transfer import sync
from launcher.transport.agent_client import AgentClient
from launcher.transport.bootstrap import HostInfo, prepare_host
from launcher.transport.targets import Target, target_for_spec

T = TypeVar("T")
R = TypeVar("R")


def each(fn: Callable[[T], R], items: Sequence[T]) -> List[R]:
    """fn on every node at once; the first error (by node) once all have finished."""
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        futures = [pool.submit(fn, item) for item in items]
    return [f.result() for f in futures]


def node_facts(loaded: LoadedSpec, targets: List[Target]) -> List[dict]:
    hs = loaded.spec.host
    master = hs.master_addr or str(targets[0].endpoint["host"])
    token = pysecrets.token_hex(16)  # the agents' control port answers only this job's nodes
    return [{"rank": k, "count": len(targets), "master_addr": master, "master_port": hs.master_port,
             "join_timeout_s": hs.join_timeout_s, "token": token} for k in range(len(targets))]


def launch_nodes(loaded: LoadedSpec, tree: sync.LocalTree, places: Places, registry: Registry,
                 console: Console, environ: Mapping[str, str]) -> Launched:
    hs = loaded.spec.host
    hub = hub_mirror.checked_for_job(loaded.spec.backup.hub_repo, environ)
    targets = [target_for_spec(hs.model_copy(update={"address": a, "nodes": 1}), places) for a in hs.addresses]
    try:
        infos = each(lambda t: prepare_host(t.host, t.python, hs.root), targets)
        for t, info in zip(targets, infos):
            if info.shipped:
                console.print(f"shipped the agent runtime to {t.host.name}", markup=False)
        return _launch_on_nodes(loaded, tree, targets, infos, registry, console, hub)
    finally:
        for t in targets:
            t.host.close()


def _launch_on_nodes(loaded: LoadedSpec, tree: sync.LocalTree, targets: List[Target], infos: List[HostInfo],
                     registry: Registry, console: Console, hub: Optional[hub_mirror.HubMirror]) -> Launched:
    spec, job_id = loaded.spec, pysecrets.token_hex(4)
    clients = [AgentClient(t.host, i.python, i.runtime_dir) for t, i in zip(targets, infos)]
    payloads = []
    for t, info, node in zip(targets, infos, node_facts(loaded, targets)):
        payloads.append(_payload(job_id, loaded, tree, t, info.python, info.executable, None, None, None, hub, None,
                                 node=node))
    nodes = [_node_entry(_record(job_id, loaded, t, i, None, p)) for t, i, p in zip(targets, infos, payloads)]
    record = _record(job_id, loaded, targets[0], infos[0], None, payloads[0])
    registry.add(JobRecord(**{**record.__dict__, "nodes": nodes}))  # first, as for one host
    job_dirs: List[Optional[str]] = [None] * len(targets)

    def create(k: int) -> "sync.SyncPlan":
        client, info = clients[k], infos[k]
        with sync.project_lock(client, info.root, spec.name, lambda: None):
            plan = _sync(client, info.root, loaded, tree, console)
            created = client.call("create-job", info.root, spec.name, job_id, input=json.dumps(payloads[k].to_json()).encode())
        job_dirs[k] = created["job_dir"]
        return plan

    try:
        plans = each(create, range(len(targets)))
        secrets = {**loaded.secret_values, **(hub.secrets if hub else {})}
        started = each(lambda k: clients[k].start(job_dirs[k], secrets), range(len(targets)))
    except BaseException:
        for k, client in enumerate(clients):
            _undo(client, registry, job_id, job_dirs[k], forget=False)
        registry.remove(job_id)
        raise
    failed = [(k, s) for k, s in enumerate(started) if not s.get("started")]
    if failed:
        registry.set_state(job_id, "FAILED")
        k, why = failed[0]
        raise RemoteError(f"the agent did not start on node {k} ({targets[k].host.name}): {why.get('why')}",
                          f"its log: tether logs {job_id} --node {k} --file agent")
    registry.set_state(job_id, "RUNNING")
    console.print(f"{len(targets)} nodes: master {(payloads[0].job.node or {})['master_addr']}:"
                  f"{spec.host.master_port}", markup=False)
    return Launched(registry.resolve(job_id), plans[0], False)


def _node_entry(rec: JobRecord) -> dict:
    return {"endpoint": rec.endpoint, "remote_root": rec.remote_root, "job_dir": rec.job_dir,
            "python": rec.python, "runtime_dir": rec.runtime_dir}
