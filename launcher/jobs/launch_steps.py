"""The steps of a launch that a one-host and a multi-node launch share: the create-job payload,
the registry record, the sync, and taking back a launch that failed before its agent ran."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

from rich.console import Console

from agent.paths import Root
from agent.protocol import HubFacts, JobFacts, JobPayload
from provisioning.base import Instance, Teardown
from provisioning.registry import RENTED

from launcher.hub import backups as hub_mirror
from launcher.transfer import sync
from launcher.transport.agent_client import AgentClient
from launcher.transport.launch_session import LaunchSession, PendingLaunch
from launcher.transport.targets import Target
from launcher.registry import JobRecord, Registry
from launcher.spec import JobSpec, LoadedSpec
from launcher.transfer.progress_bar import TransferProgress
from launcher.text import plain


@dataclass(frozen=True)
class Moving:
    """A job continuing on a new host (resume --on): its id, and how its backup gets there
    (called with the new host's client, the job's folder there, and the node: 0 for a
    one-host job)."""

    job_id: str
    bring_backup: Callable[[AgentClient, str, int], None]


@dataclass(frozen=True)
class Launched:
    record: JobRecord
    plan: sync.SyncPlan
    setup_skipped: bool


def workload_command(spec: JobSpec, python: str) -> str:
    """The shell command of a `run:` job or a built-in workload (run by the agent's own Python,
    which must have torch, deepspeed and transformers); stages carry their own."""
    if spec.run is not None:
        return spec.run
    if spec.workload is not None:
        return f"{shlex.quote(python)} -m workloads.causal_lm"
    return ""


def setup_key(spec: JobSpec, tree: sync.LocalTree) -> Optional[str]:
    """Hash of the setup text and of every workdir file it names (requirements.txt, ...)."""
    if not spec.setup:
        return None
    h = hashlib.sha256(spec.setup.encode())
    try:
        tokens = shlex.split(spec.setup)
    except ValueError:
        tokens = spec.setup.split()
    for tok in tokens:
        for part in tok.split("="):
            f = tree.files.get(part[2:] if part.startswith("./") else part)
            if f is not None:
                h.update(f"{f.rel}:{f.sha256}".encode())
    return h.hexdigest()[:24]


def undo_launch(client: AgentClient, registry: Registry, job_id: str, job_dir: Optional[str], forget: bool,
                project: str) -> bool:
    """A launch that failed before its agent ran: its folder leaves the host, its record the
    registry (forget). If the agent may have run after all (start timed out), or the project's
    lock is still held there (a create given up on may still be making the folder), both
    stay: status tells. True when nothing of the job is left on the host."""
    try:
        if job_dir is not None:
            client.call("discard-job", job_dir, "--project", project, timeout=30)
    except Exception:  # the host is gone or the agent ran: keep the record, status will say
        return False
    if forget:
        registry.remove(job_id)
    return True


def pending_launch(target: Target, loaded: LoadedSpec, cache_dir: Optional[Path]) -> PendingLaunch:
    """The host's launch session (agent/launch_session.py), started now where the host is known."""
    spec = loaded.spec
    key = json.dumps({k: target.endpoint.get(k) for k in ("kind", "host", "port", "user")}, sort_keys=True)
    return PendingLaunch(target.host, key, target.python, spec.host.root, spec.name, cache_dir)


def open_session(target: Target, loaded: LoadedSpec, scan: Callable[[], sync.LocalTree], console: Console,
                 pending: PendingLaunch) -> Tuple[LaunchSession, sync.HostManifest]:
    """The launch session, holding the project's lock, and what this laptop keeps of the
    host's copy of the code. The workdir is scanned (scan) while the host starts its side;
    where this laptop synced that host before (a TreeScan not yet done), the host is told the
    kept digest at once, and takes the lock and hashes its copy while the laptop scans."""
    spec = loaded.spec
    on_wait = lambda: console.print(  # noqa: E731
        f"waiting for another launch of {spec.name} on {target.host.name} to finish", markup=False)
    try:
        if isinstance(scan, sync.TreeScan):
            kept = sync.HostManifest(None, target.host.name, spec.host.root, spec.name, cache_dir=scan.cache_dir)
        else:
            kept = sync.HostManifest(scan(), target.host.name, spec.host.root, spec.name)
        if kept.last_digest is None:
            kept.scanned(scan())
        else:
            pending.tell(kept.known())  # the kept digest: the host locks and hashes while we scan
            kept.scanned(scan())
    except BaseException:
        pending.cancel()
        raise
    session = pending.finish(kept.known(), on_wait)
    if session.info.shipped:
        console.print(f"shipped the agent runtime to {target.host.name}", markup=False)
    return session, kept


def sync_code(client: AgentClient, session: LaunchSession, kept: sync.HostManifest, loaded: LoadedSpec,
              tree: sync.LocalTree, console: Console) -> Tuple[sync.SyncPlan, bool]:
    """Only what changed travels, while the session holds the project's lock: a small change
    on the session's own channel, else rsync or a tar stream; prints the one-line summary.
    The plan, and whether anything went around the session (its create checks the code then)."""
    project, root = loaded.spec.name, session.info.root
    the_plan = sync.plan(tree, kept.files(session.manifest))
    via, around = "", False
    changed = bool(the_plan.send or the_plan.delete)
    if changed and sync.is_small(the_plan):
        delta = io.BytesIO()
        sync.write_delta(delta, the_plan.send, the_plan.delete)
        session.put(delta.getvalue())
        via = " via the launch's own connection" if the_plan.send else ""
    elif changed:
        progress = TransferProgress(console, "sync", the_plan.send_bytes)
        try:
            pushed = sync.push(client, root, project, the_plan, loaded.workdir, os.environ, progress)
        finally:
            progress.close()
        if pushed["rsync_problem"]:
            console.print(f"  rsync not used ({plain(pushed['rsync_problem'])}): sent as a tar stream", markup=False)
        via, around = (f" via {pushed['via']}" if the_plan.send else ""), True
    kept.remember_synced()
    console.print(f"sync: {len(the_plan.send)} file(s) sent{via} ({sync.human_bytes(the_plan.send_bytes)}), "
                  f"{len(the_plan.delete)} deleted, {the_plan.unchanged} unchanged")
    for rel in tree.skipped_links:
        console.print(f"  not sent (symlink): {plain(rel)}", markup=False)
    return the_plan, around


def job_payload(job_id: str, loaded: LoadedSpec, tree: sync.LocalTree, target: Target, python: str, executable: str,
             instance: Optional[Instance], teardown: Optional[Teardown], deadline_at: Optional[float],
             hub: Optional[hub_mirror.HubMirror], moving: Optional[Moving],
             node: Optional[Dict[str, Any]] = None) -> JobPayload:
    """What create-job gets: the spec and the job's facts. No secrets: they go to `start`.
    node: a multi-node job's rank, count and master (agent/rendezvous.py's NodePlan)."""
    spec = loaded.spec
    rented = instance is not None and spec.host.provider in RENTED
    facts = JobFacts(
        id=job_id, project=spec.name, command=workload_command(spec, python), setup_key=setup_key(spec, tree),
        code_digest=tree.digest, path_prepend=tuple(target.path_prepend), python_executable=executable,
        created=time.time(), price_per_hour=instance.price_per_hour if instance else None,
        instance_created=instance.created if instance else None, autodown=spec.autodown_enabled(rented),
        autodown_wait_s=spec.autodown_wait_s, deadline_at=deadline_at, resume_first=moving is not None,
        hub=HubFacts(**hub.job_fields) if hub else None, node=node)  # type: ignore[arg-type]
    return JobPayload(spec=spec.model_dump(mode="json"), job=facts,
                      teardown=teardown.model_dump() if teardown else None)  # 0600 on the host, never logged


def job_record(job_id: str, loaded: LoadedSpec, target: Target, info, instance: Optional[Instance],
            payload: JobPayload) -> JobRecord:
    spec = loaded.spec
    rented = instance is not None and spec.host.provider in RENTED
    return JobRecord(
        id=job_id, name=spec.name, project=spec.name, spec_hash=loaded.spec_hash,
        provider=spec.host.provider, endpoint=target.endpoint, remote_root=info.root,
        job_dir=str(Root(info.root).job(job_id).path), python=info.python, runtime_dir=info.runtime_dir,
        artifacts=list(spec.artifacts), created=time.time(), last_state="LAUNCHING",
        instance=instance.model_dump(exclude={"teardown_key"}) if rented and instance else None,
        price_per_hour=instance.price_per_hour if instance else None,
        autodown=payload.job.autodown, spec=payload.spec, workdir=str(loaded.workdir),
    )
