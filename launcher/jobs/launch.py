"""`tether launch`: bootstrap the host, sync the code, create the job, start its agent."""

from __future__ import annotations

import secrets as pysecrets
import os
import time
from typing import Dict, Mapping, Optional

from rich.console import Console

from provisioning.base import Instance, SshEndpoint, Teardown
from provisioning.colab import SESSION_HOURS
from provisioning.registry import RENTED

from launcher.hub import backups as hub_mirror
from launcher.transfer import sync
from launcher.transport.agent_client import AgentClient
from launcher.errors import RemoteError, UsageError
from launcher.transport.targets import Target, target_for_rented, target_for_spec
from launcher.jobs.launch_steps import (Launched, Moving, job_payload, job_record, open_session, pending_launch,
                                        sync_code, undo_launch, workload_command)
from launcher.jobs.rent import acquire, destroy, provider_for
from launcher.registry import Registry
from launcher.transport.bootstrap import prepare_host
from launcher.settings import Places
from launcher.spec import LoadedSpec


def launch(loaded: LoadedSpec, places: Places, registry: Registry, console: Console,
           dry_run: bool = False, environ: Optional[Mapping[str, str]] = None) -> Optional[Launched]:
    spec = loaded.spec
    scan = sync.TreeScan(loaded.workdir, places.cache)
    if spec.host.provider == "colab":
        raise UsageError("a colab host is attached, not launched",
                         "run the cell from `tether colab-cell` in the notebook, then "
                         "`tether attach SPEC ADDRESS` with the address it prints")
    if spec.host.provider == "kaggle":
        tree = scan()
        if dry_run:
            _print_plan(sync.plan(tree, {}), tree, loaded, console)
            return None
        from launcher.backends import launch_kernel
        command = workload_command(spec, "python3")
        record = launch_kernel(loaded, tree, command, registry, console, os.environ if environ is None else environ)
        return Launched(record, sync.plan(tree, {}), False)
    if dry_run:
        if spec.host.provider in RENTED:  # nothing is rented for a dry run: everything would be sent
            _print_plan(sync.plan(scan(), {}), scan(), loaded, console)
            return None
        hs = spec.host  # several nodes: node 0's copy (every node is sent the same files)
        target = target_for_spec(hs.model_copy(update={"address": hs.addresses[0], "nodes": 1})
                                 if hs.nodes > 1 else hs, places)
        try:
            _dry_run(target, loaded, scan(), console)
        finally:
            target.host.close()
        return None
    return launch_on_spec_host(loaded, scan, places, registry, console,
                               os.environ if environ is None else environ)


def launch_on_spec_host(loaded: LoadedSpec, scan: sync.TreeScan, places: Places, registry: Registry,
                        console: Console, environ: Mapping[str, str],
                        moving: Optional[Moving] = None) -> Launched:
    """The spec's host: connected (local, ssh) or rented (vast, novita). A rented host is given
    back if anything fails before the job runs."""
    hs = loaded.spec.host
    if hs.nodes > 1:
        from launcher.jobs.launch_nodes import launch_nodes
        return launch_nodes(loaded, scan(), places, registry, console, environ, moving)
    hub = hub_mirror.checked_for_job(loaded.spec.backup.hub_repo, environ)  # before anything is rented
    if hs.provider not in RENTED:
        target = target_for_spec(hs, places)
        _show_retries(target, console)
        try:
            return _launch_on(target, loaded, scan, registry, console, hub=hub, moving=moving)
        finally:
            target.host.close()
    scan()  # a workdir that cannot be read fails the launch before anything is rented
    provider = provider_for(hs.provider, places, environ)
    rented = acquire(provider, hs, f"tether-{loaded.spec.name}", places, console)
    target = target_for_rented(rented.endpoint, hs, places)
    _show_retries(target, console)
    try:
        return _launch_on(target, loaded, scan, registry, console, rented.instance,
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
    scan = sync.TreeScan(loaded.workdir, places.cache)
    hs = loaded.spec.host
    hub = hub_mirror.checked_for_job(loaded.spec.backup.hub_repo, environ)
    target = target_for_rented(endpoint, hs, places)
    hours = hs.session_hours or SESSION_HOURS
    try:
        return _launch_on(target, loaded, scan, registry, console, deadline_at=time.time() + hours * 3600,
                          hub=hub)
    finally:
        target.host.close()


def _launch_on(target: Target, loaded: LoadedSpec, scan: sync.TreeScan, registry: Registry,
               console: Console, instance: Optional[Instance] = None,
               teardown: Optional[Teardown] = None, deadline_at: Optional[float] = None,
               hub: Optional[hub_mirror.HubMirror] = None, moving: Optional[Moving] = None) -> Launched:
    """All or nothing: the job is in the registry before anything of it is on the host, and a
    launch that fails (or is interrupted) before its agent runs takes both back."""
    spec = loaded.spec
    session, kept = open_session(target, loaded, scan, console, pending_launch(target, loaded, scan.cache_dir))
    tree = scan()
    try:
        info = session.info
        client = AgentClient(target.host, info.python, info.runtime_dir)
        job_id = moving.job_id if moving else pysecrets.token_hex(4)
        payload = job_payload(job_id, loaded, tree, target, info.python, info.executable, instance, teardown,
                              deadline_at, hub, moving)
        record = job_record(job_id, loaded, target, info, instance, payload)
        if moving is None:
            registry.add(record)  # first: nothing of a job is ever on a host the registry does not know
        job_dir: Optional[str] = None
        try:
            the_plan, around = sync_code(client, session, kept, loaded, tree, console)
            job_dir = record.job_dir  # from here the job may be on the host, even if its answer is lost
            created = session.create(job_id, payload, pushed=around, check_after=True)  # one host: nothing waits on it
            job_dir = created["job_dir"]
            if spec.setup:
                console.print("setup: unchanged since it last ran on this host, skipping" if created["setup_done"]
                              else "setup: will run before the workload")
            if moving is not None:
                moving.bring_backup(client, job_dir, 0)
                registry.rehome(job_id, provider=record.provider, endpoint=record.endpoint, instance=record.instance,
                                remote_root=record.remote_root, job_dir=record.job_dir, python=record.python,
                                runtime_dir=record.runtime_dir, price_per_hour=record.price_per_hour,
                                autodown=record.autodown, spec=record.spec)
            secrets = {**loaded.secret_values, **(hub.secrets if hub else {})}
            # On the session's stdin: never argv, never a file.
            started = session.start(secrets)
        except BaseException:
            session.abandon()  # our own session must not hold the project's lock the undo waits for
            undo_launch(client, registry, job_id, job_dir, forget=moving is None, project=spec.name)
            raise
    finally:
        session.close()
    if not started.get("started"):
        registry.set_state(job_id, "FAILED")
        raise RemoteError(f"the agent did not start on {target.host.name}: {started.get('why')}",
                          f"its log: tether logs {job_id} --file agent")
    registry.set_state(job_id, "RUNNING")
    return Launched(record, the_plan, bool(created["setup_done"]))


def _dry_run(target: Target, loaded: LoadedSpec, tree: sync.LocalTree, console: Console) -> None:
    """What a launch would send: compared with the host's copy when tether already ran there.
    Nothing is installed or changed on the host."""
    remote: Dict[str, dict] = {}
    info = prepare_host(target.host, target.python, loaded.spec.host.root, ship=False)
    if not info.shipped:
        client = AgentClient(target.host, info.python, info.runtime_dir)
        kept = sync.HostManifest(tree, target.host.name, loaded.spec.host.root, loaded.spec.name)
        remote = sync.remote_manifest(client, info.root, loaded.spec.name, kept)
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
