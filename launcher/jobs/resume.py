"""`tether resume JOB`: start a stopped, failed or LOST job's agent again on its host; it
continues from the newest verified backup and skips finished stages."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Optional

from rich.console import Console

from agent.protocol import JobState
from provisioning.registry import RENTED

from launcher.hub import backups as hub_mirror
from launcher.transport.agent_client import AgentClient
from launcher.errors import RemoteError, SpecError, UsageError
from launcher.registry import JobRecord, Registry
from launcher.jobs.launch import Launched, start_agent
from launcher.settings import Places
from launcher.text import inert


def resume(client: AgentClient, rec: JobRecord, environ: Mapping[str, str], registry: Registry) -> str:
    """The secrets named by the spec this laptop recorded at launch (never by what the host
    says its spec is: a host must not choose which of your variables it receives)."""
    from launcher.spec import JobSpec

    if not rec.spec:
        raise UsageError(f"job {rec.id} was launched by an older tether that did not record its spec",
                         "launch it again")
    spec = JobSpec.model_validate(rec.spec)
    secrets = {}
    for name in spec.secrets:
        if name not in environ:
            raise SpecError(f"secret {name} of job {rec.id} is not set in the environment",
                            f"export {name} before resuming")
        secrets[name] = environ[name]
    hub = hub_mirror.for_job(spec.backup.hub_repo, environ)
    if hub is not None:  # the agent pushes backups to the Hub again
        secrets.update(hub.secrets)
    prepared = client.call("prepare-resume", rec.job_dir)
    started = start_agent(client, rec.job_dir, secrets)
    if not started["started"]:
        raise RemoteError(f"the agent did not start again: {started['why']}",
                          f"its log: tether logs {rec.id} --file agent")
    registry.set_state(rec.id, "RUNNING")
    return prepared.get("previous_state") or "unknown"


def resume_on(rec: JobRecord, address: str, places: Places, registry: Registry, console: Console,
              environ: Mapping[str, str]) -> Launched:
    """The old host is gone: connect the new one (an SSH address, an ~/.ssh/config alias,
    local, or a provider name -- vast, novita -- to rent one with the job's host settings),
    sync the workdir as it is now, bring the newest verified backup from the job's mirror (the
    Hub or this laptop), and continue from it under the same job id."""
    from launcher.transfer import sync
    from launcher.jobs.launch import Moving, launch_on_spec_host
    from launcher.spec import HostSpec, JobSpec, LoadedSpec

    if not rec.spec or not rec.workdir:
        raise UsageError(f"job {rec.id} was launched by an older tether that did not record its spec",
                         "launch it again")
    if rec.in_kernel:
        _check_kernel_ended(rec, environ)
    spec = JobSpec.model_validate(rec.spec)
    if rec.in_notebook and spec.backup.hub_repo is None:
        raise UsageError(f"job {rec.id} ran in a Colab notebook without backup.mirror: hf://...: its backups "
                         "never left the runtime", "launch it again (with a mirror, to carry it on next time)")
    if rec.in_notebook:  # nothing can ask the notebook; the user knows whether its session ended
        console.print(f"[yellow]note:[/] tether cannot see whether job {rec.id}'s Colab notebook still runs: "
                      "if it does, stop it, or two copies will train")
    bring = _backup_bringer(rec, spec.backup.hub_repo, places, environ, console)
    host = spec.host.model_dump(exclude_unset=False)
    if address in RENTED:
        host.update({"provider": address, "address": None})
    else:
        host.update({"provider": "local"} if address == "local" else {"provider": "ssh", "address": address})
    spec = spec.model_copy(update={"host": HostSpec.model_validate(host)})
    values = {}
    for name in spec.secrets:
        if name not in environ:
            raise SpecError(f"secret {name} of job {rec.id} is not set in the environment", f"export {name}")
        values[name] = environ[name]
    workdir = Path(rec.workdir)
    if not workdir.is_dir():
        raise UsageError(f"the job's workdir {workdir} is gone from this laptop", "restore it, then resume")
    loaded = LoadedSpec(spec=spec, path=workdir / "job.yaml", workdir=workdir, secret_values=values)
    tree = sync.scan(workdir, sync.hash_cache_for(places.cache, workdir))
    _let_go_of_old_instance(rec, places, registry, console, environ)
    return launch_on_spec_host(loaded, tree, places, registry, console, environ, Moving(rec.id, bring))


def _check_kernel_ended(rec: JobRecord, environ: Mapping[str, str]) -> None:
    from provisioning.base import ProviderError

    from launcher.backends.kaggle import kernel_view
    try:
        state = JobState(kernel_view(rec, environ)["state"])
    except ProviderError as exc:
        raise RemoteError(exc.what, exc.todo) from None
    if not state.is_terminal:
        raise UsageError(f"job {rec.id}'s Kaggle kernel is still running: two copies would train",
                         f"stop it first (tether stop {rec.id}), or wait for its session to end")


def _backup_bringer(rec: JobRecord, hub_repo: Optional[str], places: Places, environ: Mapping[str, str],
                    console: Console) -> Callable[[AgentClient, str], None]:
    """How the newest backup gets to the new host, checked before anything is rented: from the
    Hub (downloaded by the new host itself; through this laptop when the host has no
    huggingface_hub yet), or from the laptop mirror."""
    from launcher.transfer.laptop_backups import mirror_dir, newest, send_backup

    def send(client: AgentClient, job_dir: str, folder: Path) -> None:
        got = send_backup(client, job_dir, folder)
        console.print(f"brought backup {inert(got.get('backup'))} (step {inert(got.get('step'))}) to the new host")

    hub = hub_mirror.for_job(hub_repo, environ)
    if hub is None:
        folder = newest(places, rec)
        return lambda client, job_dir: send(client, job_dir, folder)
    hub_mirror.newest_name(hub, environ)

    def from_hub(client: AgentClient, job_dir: str) -> None:
        got = hub_mirror.fetch(client, job_dir, hub, console)
        if got is not None:
            console.print(f"the new host fetched backup {inert(got.get('name'))} (step {inert(got.get('step'))}) from hf://{hub.repo}")
            return
        console.print("the new host has no huggingface_hub yet: the backup comes through this laptop")
        send(client, job_dir, hub_mirror.fetch_to_laptop(hub, mirror_dir(places, rec) / "hub", console))

    return from_hub


def _let_go_of_old_instance(rec: JobRecord, places: Places, registry: Registry, console: Console,
                            environ: Mapping[str, str]) -> None:
    """The registry is about to point elsewhere: a rented old host must not be forgotten while
    it may still bill. Destroy it (gone already is fine), or say which one to check."""
    if not rec.instance_alive:
        return
    from launcher.errors import TetherError
    from launcher.jobs.lifecycle import destroy_instance

    inst = rec.instance or {}
    try:
        destroy_instance(rec, places, registry, environ)
        console.print(f"destroyed the old {inert(inst.get('provider'))} instance {inert(inst.get('id'))}")
    except TetherError as exc:
        console.print(f"[yellow]warning:[/] could not destroy the old {inert(inst.get('provider'))} instance "
                      f"{inert(inst.get('id'))} ({inert(exc.line())}): check it in the provider's console")
