"""`tether resume JOB --on HOST`: a job carried on elsewhere from its newest mirrored backup,
when its host is gone. A job on N nodes moves to N hosts of your own (`--on a,b`), each node
brought its own backup of the newest step that every node has in the mirror (launcher/jobs/
resume_nodes.py). (Resuming on its own host is the handle's: backends/agent.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Optional

from rich.console import Console

from provisioning.registry import RENTED

from launcher.backends import Context, handle_for
from launcher.hub import backups as hub_mirror
from launcher.transport.agent_client import AgentClient
from launcher.errors import SpecError, UsageError
from launcher.registry import JobRecord, Registry
from launcher.jobs.launch import Launched
from launcher.settings import Places
from launcher.text import inert


def resume_on(rec: JobRecord, address: str, places: Places, registry: Registry, console: Console,
              environ: Mapping[str, str], force: bool = False) -> Launched:
    """The old host is gone: connect the new one (an SSH address, an ~/.ssh/config alias,
    local, or a provider name -- vast, novita -- to rent one with the job's host settings),
    sync the workdir as it is now, bring the newest verified backup from the job's mirror (the
    Hub or this laptop), and continue from it under the same job id. First the old host is
    asked whether the job still runs there (force: not asked; said)."""
    from launcher.transfer import sync
    from launcher.jobs.launch import Moving, launch_on_spec_host
    from launcher.spec import HostSpec, JobSpec, LoadedSpec

    if not rec.spec or not rec.workdir:
        raise UsageError(f"job {rec.id} was launched by an older tether that did not record its spec",
                         "launch it again")
    spec = JobSpec.model_validate(rec.spec)
    host = spec.host.model_dump(exclude_unset=False)
    if spec.host.nodes > 1:
        from launcher.jobs.resume_nodes import node_addresses, node_backup_bringer

        addresses = node_addresses(rec.id, spec.host.nodes, address)
        bring = node_backup_bringer(rec, spec.host.nodes, spec.backup.hub_repo, places, environ, console)
        # The old master address was one of the old hosts: node 0's new address is the master.
        host.update({"provider": "ssh", "address": addresses, "master_addr": None})
    else:
        given = [a for a in address.split(",") if a.strip()]
        if len(given) > 1:
            raise UsageError(f"job {rec.id} runs on one host: --on takes one address, not {len(given)}",
                             f"e.g. tether resume {rec.id} --on {given[0].strip()}")
        one = _backup_bringer(rec, spec.backup.hub_repo, places, environ, console)
        bring = lambda client, job_dir, _k: one(client, job_dir)  # noqa: E731
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
    scan = sync.TreeScan(workdir, places.cache)
    # What the laptop can check itself came first; now the old host(s): not still running it.
    if force:
        console.print(f"[yellow]note:[/] the old host was not asked (--force): if it still runs job {rec.id}, "
                      "two copies train")
    else:
        handle_for(rec, Context(places, registry, environ)).before_move(console)
    _let_go_of_old_instance(rec, places, registry, console, environ)
    return launch_on_spec_host(loaded, scan, places, registry, console, environ, Moving(rec.id, bring))


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
