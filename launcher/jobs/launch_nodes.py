"""`tether launch` of a job on several hosts (host.nodes > 1): every node prepared and synced
at once, one job folder and one agent per node, each told its rank, the node count and the
master's address and port. torch's rendezvous does the rest (agent/rendezvous.py)."""

from __future__ import annotations

import secrets as pysecrets
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Mapping, Optional, Sequence, Tuple, TypeVar

from rich.console import Console

from launcher.errors import RemoteError
from launcher.hub import backups as hub_mirror
from launcher.jobs.launch_steps import Launched, job_payload, job_record, open_session, sync_code, undo_launch
from launcher.registry import JobRecord, Registry
from launcher.settings import Places
from launcher.spec import LoadedSpec
from launcher.transfer import sync
from launcher.transport.agent_client import AgentClient
from launcher.transport.launch_session import LaunchSession
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
        opened = _open_sessions(targets, loaded, tree, console)
        try:
            return _launch_on_nodes(loaded, tree, targets, opened, registry, console, hub)
        finally:
            for session, _ in opened:
                session.close()
    finally:
        for t in targets:
            t.host.close()


def _open_sessions(targets: List[Target], loaded: LoadedSpec, tree: sync.LocalTree,
                   console: Console) -> List[Tuple[LaunchSession, sync.HostManifest]]:
    """Every node's launch session at once; if one cannot open, the others are closed."""
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        scan = sync.TreeScan.done(tree)
        futures = [pool.submit(open_session, t, loaded, scan, console) for t in targets]
    failed = [f.exception() for f in futures if f.exception() is not None]
    if failed:
        for f in futures:
            if f.exception() is None:
                f.result()[0].close()
        raise failed[0]
    return [f.result() for f in futures]


def _launch_on_nodes(loaded: LoadedSpec, tree: sync.LocalTree, targets: List[Target],
                     opened: List[Tuple[LaunchSession, sync.HostManifest]], registry: Registry, console: Console,
                     hub: Optional[hub_mirror.HubMirror]) -> Launched:
    spec, job_id = loaded.spec, pysecrets.token_hex(4)
    infos = [session.info for session, _ in opened]
    clients = [AgentClient(t.host, i.python, i.runtime_dir) for t, i in zip(targets, infos)]
    payloads = []
    for t, info, node in zip(targets, infos, node_facts(loaded, targets)):
        payloads.append(job_payload(job_id, loaded, tree, t, info.python, info.executable, None, None, None, hub,
                                    None, node=node))
    nodes = [_node_entry(job_record(job_id, loaded, t, i, None, p)) for t, i, p in zip(targets, infos, payloads)]
    record = job_record(job_id, loaded, targets[0], infos[0], None, payloads[0])
    registry.add(JobRecord(**{**record.__dict__, "nodes": nodes}))  # first, as for one host
    job_dirs: List[Optional[str]] = [None] * len(targets)

    def create(k: int) -> "sync.SyncPlan":
        session, kept = opened[k]
        plan = sync_code(clients[k], session, kept, loaded, tree, console)
        job_dirs[k] = session.create(job_id, payloads[k], pushed=bool(plan.send or plan.delete))["job_dir"]
        return plan

    try:
        plans = each(create, range(len(targets)))
        secrets = {**loaded.secret_values, **(hub.secrets if hub else {})}
        started = each(lambda k: opened[k][0].start(secrets), range(len(targets)))
    except BaseException:
        for session, _ in opened:
            session.close()
        for k, client in enumerate(clients):
            undo_launch(client, registry, job_id, job_dirs[k], forget=False)
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
