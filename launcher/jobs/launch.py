"""`tether launch`: bootstrap the host, sync the code, create the job, start its agent."""

from __future__ import annotations

import hashlib
import json
import secrets as pysecrets
import shlex
import os
import time
from dataclasses import dataclass
from typing import Callable, Dict, Mapping, Optional

from rich.console import Console

from agent.paths import Root
from agent.protocol import HubFacts, JobFacts, JobPayload
from provisioning.base import Instance, SshEndpoint, Teardown
from provisioning.colab import SESSION_HOURS
from provisioning.registry import RENTED

from launcher.hub import backups as hub_mirror
from launcher.transfer import sync
from launcher.transport.agent_client import AgentClient
from launcher.errors import RemoteError, UsageError
from launcher.transport.targets import Target, target_for_rented, target_for_spec
from launcher.jobs.rent import acquire, destroy, provider_for
from launcher.registry import JobRecord, Registry
from launcher.transport.bootstrap import prepare_host
from launcher.settings import Places
from launcher.spec import JobSpec, LoadedSpec
from launcher.transfer.progress_bar import TransferProgress


@dataclass(frozen=True)
class Moving:
    """A job continuing on a new host (resume --on): its id, and how its backup gets there."""

    job_id: str
    bring_backup: Callable[[AgentClient, str], None]


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


def launch(loaded: LoadedSpec, places: Places, registry: Registry, console: Console,
           dry_run: bool = False, environ: Optional[Mapping[str, str]] = None) -> Optional[Launched]:
    spec = loaded.spec
    tree = sync.scan(loaded.workdir, sync.hash_cache_for(places.cache, loaded.workdir))
    if spec.host.provider == "colab":
        raise UsageError("a colab host is attached, not launched",
                         "run the cell from `tether colab-cell` in the notebook, then "
                         "`tether attach SPEC ADDRESS` with the address it prints")
    if spec.host.provider == "kaggle":
        if dry_run:
            _print_plan(sync.plan(tree, {}), tree, loaded, console)
            return None
        from launcher.backends import launch_kernel
        command = workload_command(spec, "python3")
        record = launch_kernel(loaded, tree, command, registry, console, os.environ if environ is None else environ)
        return Launched(record, sync.plan(tree, {}), False)
    if dry_run:
        if spec.host.provider in RENTED:  # nothing is rented for a dry run: everything would be sent
            _print_plan(sync.plan(tree, {}), tree, loaded, console)
            return None
        target = target_for_spec(spec.host, places)
        try:
            _dry_run(target, loaded, tree, console)
        finally:
            target.host.close()
        return None
    return launch_on_spec_host(loaded, tree, places, registry, console,
                               os.environ if environ is None else environ)


def launch_on_spec_host(loaded: LoadedSpec, tree: sync.LocalTree, places: Places, registry: Registry,
                        console: Console, environ: Mapping[str, str],
                        moving: Optional[Moving] = None) -> Launched:
    """The spec's host: connected (local, ssh) or rented (vast, novita). A rented host is given
    back if anything fails before the job runs."""
    hs = loaded.spec.host
    hub = hub_mirror.checked_for_job(loaded.spec.backup.hub_repo, environ)  # before anything is rented
    if hs.provider not in RENTED:
        target = target_for_spec(hs, places)
        _show_retries(target, console)
        try:
            return _launch_on(target, loaded, tree, registry, console, hub=hub, moving=moving)
        finally:
            target.host.close()
    provider = provider_for(hs.provider, places, environ)
    rented = acquire(provider, hs, f"tether-{loaded.spec.name}", places, console)
    target = target_for_rented(rented.endpoint, hs, places)
    _show_retries(target, console)
    try:
        return _launch_on(target, loaded, tree, registry, console, rented.instance,
                          provider.teardown(rented.instance), hub=hub, moving=moving)
    except BaseException:
        console.print(f"the launch failed: destroying {provider.name} instance {rented.instance.id}")
        destroy(provider, rented.instance)
        raise
    finally:
        target.host.close()


def _show_retries(target: Target, console: Console) -> None:
    """While a launch waits for a host that does not answer, each retry is a line."""
    if hasattr(target.host, "on_retry"):
        target.host.on_retry = lambda line: console.print(f"  {line}", markup=False, highlight=False)


def attach(loaded: LoadedSpec, endpoint: SshEndpoint, places: Places, registry: Registry,
           console: Console, environ: Mapping[str, str]) -> Launched:
    """Launch onto a session host a person started (the Colab cell): an SSH host with a hard
    end, which becomes the agent's deadline (a final backup before the session goes)."""
    tree = sync.scan(loaded.workdir, sync.hash_cache_for(places.cache, loaded.workdir))
    hs = loaded.spec.host
    hub = hub_mirror.checked_for_job(loaded.spec.backup.hub_repo, environ)
    target = target_for_rented(endpoint, hs, places)
    hours = hs.session_hours or SESSION_HOURS
    try:
        return _launch_on(target, loaded, tree, registry, console, deadline_at=time.time() + hours * 3600,
                          hub=hub)
    finally:
        target.host.close()


def _launch_on(target: Target, loaded: LoadedSpec, tree: sync.LocalTree, registry: Registry,
               console: Console, instance: Optional[Instance] = None,
               teardown: Optional[Teardown] = None, deadline_at: Optional[float] = None,
               hub: Optional[hub_mirror.HubMirror] = None, moving: Optional[Moving] = None) -> Launched:
    """All or nothing: the job is in the registry before anything of it is on the host, and a
    launch that fails (or is interrupted) before its agent runs takes both back."""
    spec = loaded.spec
    info = prepare_host(target.host, target.python, spec.host.root)
    if info.shipped:
        console.print(f"shipped the agent runtime to {target.host.name}")
    client = AgentClient(target.host, info.python, info.runtime_dir)
    job_id = moving.job_id if moving else pysecrets.token_hex(4)
    payload = _payload(job_id, loaded, tree, target, info.python, info.executable, instance, teardown,
                       deadline_at, hub, moving)
    record = _record(job_id, loaded, target, info, instance, payload)
    if moving is None:
        registry.add(record)  # first: nothing of a job is ever on a host the registry does not know
    job_dir: Optional[str] = None
    try:
        with sync.project_lock(client, info.root, spec.name, lambda: console.print(
                f"waiting for another launch of {spec.name} on {target.host.name} to finish", markup=False)):
            the_plan = _sync(client, info.root, loaded, tree, console)
            created = client.call("create-job", info.root, spec.name, job_id, input=json.dumps(payload.to_json()).encode())
        job_dir = created["job_dir"]
        if spec.setup:
            console.print("setup: unchanged since it last ran on this host, skipping" if created["setup_done"]
                          else "setup: will run before the workload")
        if moving is not None:
            moving.bring_backup(client, job_dir)
            registry.rehome(job_id, provider=record.provider, endpoint=record.endpoint, instance=record.instance,
                            remote_root=record.remote_root, job_dir=record.job_dir, python=record.python,
                            runtime_dir=record.runtime_dir, price_per_hour=record.price_per_hour,
                            autodown=record.autodown)
        secrets = {**loaded.secret_values, **(hub.secrets if hub else {})}
        # On the agent's stdin, through `start`: never argv, never a file.
        started = client.start(job_dir, secrets)
    except BaseException:
        _undo(client, registry, job_id, job_dir, forget=moving is None)
        raise
    if not started.get("started"):
        registry.set_state(job_id, "FAILED")
        raise RemoteError(f"the agent did not start on {target.host.name}: {started.get('why')}",
                          f"its log: tether logs {job_id} --file agent")
    registry.set_state(job_id, "RUNNING")
    return Launched(record, the_plan, bool(created["setup_done"]))


def _undo(client: AgentClient, registry: Registry, job_id: str, job_dir: Optional[str], forget: bool) -> None:
    """A launch that failed before its agent ran: its folder leaves the host, its record the
    registry. If the agent may have run after all (start timed out), both stay: status tells."""
    try:
        if job_dir is not None:
            client.call("discard-job", job_dir, timeout=30)
    except Exception:  # the host is gone or the agent ran: keep the record, status will say
        return
    if forget:
        registry.remove(job_id)


def _sync(client: AgentClient, root: str, loaded: LoadedSpec, tree: sync.LocalTree, console: Console) -> sync.SyncPlan:
    """Only what changed travels (rsync or a tar stream); prints the one-line summary."""
    project = loaded.spec.name
    the_plan = sync.plan(tree, sync.remote_manifest(client, root, project, tree, host_key=client.host.name))
    via = ""
    if the_plan.send or the_plan.delete:
        progress = TransferProgress(console, "sync", the_plan.send_bytes)
        try:
            pushed = sync.push(client, root, project, the_plan, loaded.workdir, os.environ, progress)
        finally:
            progress.close()
        if pushed["rsync_problem"]:
            console.print(f"  rsync not used ({pushed['rsync_problem']}): sent as a tar stream", markup=False)
        via = f" via {pushed['via']}" if the_plan.send else ""
    console.print(f"sync: {len(the_plan.send)} file(s) sent{via} ({sync.human_bytes(the_plan.send_bytes)}), "
                  f"{len(the_plan.delete)} deleted, {the_plan.unchanged} unchanged")
    for rel in tree.skipped_links:
        console.print(f"  not sent (symlink): {rel}", markup=False)
    return the_plan


def _payload(job_id: str, loaded: LoadedSpec, tree: sync.LocalTree, target: Target, python: str, executable: str,
             instance: Optional[Instance], teardown: Optional[Teardown], deadline_at: Optional[float],
             hub: Optional[hub_mirror.HubMirror], moving: Optional[Moving]) -> JobPayload:
    """What create-job gets: the spec and the job's facts. No secrets: they go to `start`."""
    spec = loaded.spec
    rented = instance is not None and spec.host.provider in RENTED
    facts = JobFacts(
        id=job_id, project=spec.name, command=workload_command(spec, python), setup_key=setup_key(spec, tree),
        code_digest=tree.digest, path_prepend=tuple(target.path_prepend), python_executable=executable,
        created=time.time(), price_per_hour=instance.price_per_hour if instance else None,
        instance_created=instance.created if instance else None, autodown=spec.autodown_enabled(rented),
        autodown_wait_s=spec.autodown_wait_s, deadline_at=deadline_at, resume_first=moving is not None,
        hub=HubFacts(**hub.job_fields) if hub else None)  # type: ignore[arg-type]
    return JobPayload(spec=spec.model_dump(mode="json"), job=facts,
                      teardown=teardown.model_dump() if teardown else None)  # 0600 on the host, never logged


def _record(job_id: str, loaded: LoadedSpec, target: Target, info, instance: Optional[Instance],
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


def _dry_run(target: Target, loaded: LoadedSpec, tree: sync.LocalTree, console: Console) -> None:
    """What a launch would send: compared with the host's copy when tether already ran there.
    Nothing is installed or changed on the host."""
    remote: Dict[str, dict] = {}
    info = prepare_host(target.host, target.python, loaded.spec.host.root, ship=False)
    if not info.shipped:
        client = AgentClient(target.host, info.python, info.runtime_dir)
        remote = client.call("manifest", info.root, loaded.spec.name)
    python = f"{info.executable} (Python {'.'.join(map(str, info.version))})"
    _print_plan(sync.plan(tree, remote), tree, loaded, console, python)


MAX_LISTED = 50


def _print_plan(the_plan: sync.SyncPlan, tree: sync.LocalTree, loaded: LoadedSpec, console: Console,
                python: Optional[str] = None) -> None:
    def say(text: str) -> None:
        console.print(text, markup=False, highlight=False)

    say(f"dry run: would send {len(the_plan.send)} file(s), {sync.human_bytes(the_plan.send_bytes)}; "
        f"delete {len(the_plan.delete)}; {the_plan.unchanged} unchanged (of {len(tree.files)} in {loaded.workdir})")
    say(f"  python: {python or loaded.spec.host.python or 'python3'} runs `python`, `python3` and `pip` in "
        "run: and setup:" + ("" if python else " (found on the host at launch)"))
    for line in sync.iter_lines(the_plan):
        say(line)
    for rel in tree.skipped_links:
        say(f"  not sent (symlink): {rel}")
    for rel, rule in tree.left_out[:MAX_LISTED]:
        say(f"  not sent: {rel}  ({rule})")
    if len(tree.left_out) > MAX_LISTED:
        say(f"  ... and {len(tree.left_out) - MAX_LISTED} more left out")
    negatable = [rel for rel, rule in tree.left_out if rule.source != "built-in"]
    if negatable:
        say(f"  to send one anyway, add a `!` line to .tetherignore, e.g. `!{negatable[0]}`"
            " (a folder left out must be sent itself before a file in it can be)")
