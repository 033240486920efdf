"""`tether launch` of a job on several hosts (host.nodes > 1): every node prepared and synced
at once, one job folder and one agent per node, each told its rank, the node count and the
master's address and port. torch's rendezvous does the rest (agent/rendezvous.py). A job moved
to new hosts (resume --on) keeps its id; node K is brought node K's backup before it starts."""

from __future__ import annotations

import secrets as pysecrets
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Mapping, Optional, Sequence, TypeVar

from rich.console import Console

from launcher.errors import RemoteError, TetherError
from launcher.hub import backups as hub_mirror
from launcher.jobs.launch_steps import (Launched, Moving, job_payload, job_record, open_session, pending_launch,
                                        sync_code, undo_launch)
from launcher.registry import JobRecord, Registry
from launcher.settings import Places
from launcher.spec import LoadedSpec
from launcher.transfer import sync
from launcher.transport.agent_client import AgentClient
from launcher.transport.bootstrap import HostInfo
from launcher.transport.launch_session import LaunchSession, PendingLaunch
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
             "join_timeout_s": hs.join_timeout_s, "silence_s": hs.node_silence_s, "token": token}
            for k in range(len(targets))]


def launch_nodes(loaded: LoadedSpec, tree: sync.LocalTree, places: Places, registry: Registry,
                 console: Console, environ: Mapping[str, str], moving: Optional[Moving] = None) -> Launched:
    """Every node is introduced (its Python and root; the probe where needed) before any is
    locked, so the record can be made first; then each node locks, syncs and creates on its
    own, holding no other node's lock meanwhile (two launches of the project at once cannot
    each hold a node the other waits for)."""
    hs = loaded.spec.host
    hub = hub_mirror.checked_for_job(loaded.spec.backup.hub_repo, environ)
    targets = [target_for_spec(hs.model_copy(update={"address": a, "nodes": 1}), places) for a in hs.addresses]
    pendings = [pending_launch(t, loaded, tree.cache_dir) for t in targets]
    try:
        infos = each(lambda p: p.introduce(), pendings)
        for t, info in zip(targets, infos):
            if info.shipped:
                console.print(f"shipped the agent runtime to {t.host.name}", markup=False)
        return _launch_on_nodes(loaded, tree, targets, pendings, infos, registry, console, hub, moving)
    finally:
        for p in pendings:
            p.cancel()  # a node's session that ended well is not touched
        for t in targets:
            t.host.close()


def _launch_on_nodes(loaded: LoadedSpec, tree: sync.LocalTree, targets: List[Target], pendings: List[PendingLaunch],
                     infos: List[HostInfo], registry: Registry, console: Console,
                     hub: Optional[hub_mirror.HubMirror], moving: Optional[Moving]) -> Launched:
    spec, job_id = loaded.spec, moving.job_id if moving else pysecrets.token_hex(4)
    clients = [AgentClient(t.host, i.python, i.runtime_dir) for t, i in zip(targets, infos)]
    payloads = []
    for t, info, node in zip(targets, infos, node_facts(loaded, targets)):
        payloads.append(job_payload(job_id, loaded, tree, t, info.python, info.executable, None, None, None, hub,
                                    moving, node=node))
    records = [job_record(job_id, loaded, t, i, None, p) for t, i, p in zip(targets, infos, payloads)]
    if moving is None:
        registry.add(JobRecord(**{**records[0].__dict__, "nodes": [_node_entry(r) for r in records]}))  # first
    job_dirs: List[Optional[str]] = [None] * len(targets)
    sessions: List[Optional[LaunchSession]] = [None] * len(targets)

    def create(k: int) -> "sync.SyncPlan":
        session, kept = open_session(targets[k], loaded, lambda: tree, console, pendings[k])
        sessions[k] = session
        plan, around = sync_code(clients[k], session, kept, loaded, tree, console)
        job_dirs[k] = records[k].job_dir  # from here the job may be on the node, even if its answer is lost
        created = session.create(job_id, payloads[k], pushed=around)
        if moving is not None:
            moving.bring_backup(clients[k], created["job_dir"], k)
        return plan

    try:
        plans = each(create, range(len(targets)))
        if moving is not None:  # every node has its backup: the registry points at the new hosts
            first = records[0]
            registry.rehome(job_id, provider=first.provider, endpoint=first.endpoint, instance=None,
                            remote_root=first.remote_root, job_dir=first.job_dir, python=first.python,
                            runtime_dir=first.runtime_dir, price_per_hour=None, autodown=first.autodown,
                            nodes=[_node_entry(r) for r in records], spec=first.spec)
        secrets = {**loaded.secret_values, **(hub.secrets if hub else {})}
        started = each(lambda k: sessions[k].start(secrets), range(len(targets)))  # type: ignore[union-attr]
    except BaseException:
        for p in pendings:
            p.cancel()
        undone = _undo_all(clients, registry, job_id, job_dirs, spec.name)
        if all(undone) and moving is None:  # else an agent may run on a node: the record stays, status tells
            registry.remove(job_id)
        # A node whose agent did start would wait for the others until join_timeout_s.
        _stop_all(clients, [None if gone else job_dirs[k] for k, gone in enumerate(undone)],
                  "the launch failed before every node started")
        raise
    finally:
        for session in sessions:
            if session is not None:
                session.close()
    failed = [(k, s) for k, s in enumerate(started) if not s.get("started")]
    if failed:
        k, why = failed[0]
        _stop_all(clients, job_dirs, f"the launch failed: node {k}'s agent did not start")
        registry.set_state(job_id, "FAILED")
        raise RemoteError(f"the agent did not start on node {k} ({targets[k].host.name}): {why.get('why')}",
                          f"its log: tether logs {job_id} --node {k} --file agent")
    registry.set_state(job_id, "RUNNING")
    console.print(f"{len(targets)} nodes: master {(payloads[0].job.node or {})['master_addr']}:"
                  f"{spec.host.master_port}", markup=False)
    return Launched(registry.resolve(job_id), plans[0], False)


def _undo_all(clients: List[AgentClient], registry: Registry, job_id: str, job_dirs: List[Optional[str]],
              project: str) -> List[bool]:
    """undo_launch on every node at once (each may wait for its node's project lock); the
    registry is left alone there (forget=False): the caller decides from all the answers."""
    return each(lambda k: undo_launch(clients[k], registry, job_id, job_dirs[k], False, project), range(len(clients)))


def _stop_all(clients: List[AgentClient], job_dirs: List[Optional[str]], why: str) -> None:
    """Every node asked to stop: a started agent would wait for the others (holding its host)
    until join_timeout_s; one that never ran is marked STOPPED, so the job reads as ended, not
    LOST. A node that cannot be asked: status says."""
    for client, job_dir in zip(clients, job_dirs):
        if job_dir is not None:
            try:
                client.call("stop", job_dir, "--reason", why, timeout=30)
            except TetherError:
                pass


def _node_entry(rec: JobRecord) -> dict:
    return {"endpoint": rec.endpoint, "remote_root": rec.remote_root, "job_dir": rec.job_dir,
            "python": rec.python, "runtime_dir": rec.runtime_dir}
