"""The end of a rented host's life: `tether down`, autodown when a job has ended, and the
warning about instances still alive with no running job."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Mapping

from rich.console import Console

from agent.protocol import JobState
from provisioning.base import Instance

from launcher.errors import RemoteError, TetherError
from launcher.transport.targets import agent_for
from launcher.registry import JobRecord, Registry
from launcher.jobs.observe import JobView
from launcher.jobs.rent import destroy, provider_for
from launcher.transfer.pull import pull
from launcher.settings import Places
from launcher.text import inert


def results_dir(places: Places, rec: JobRecord) -> Path:
    return places.data / "results" / f"{rec.name}-{rec.id}"


def destroy_instance(rec: JobRecord, places: Places, registry: Registry, environ: Mapping[str, str]) -> None:
    inst = Instance(**{k: v for k, v in (rec.instance or {}).items() if k in Instance.model_fields})
    destroy(provider_for(inst.provider, places, environ), inst)
    registry.set_instance(rec.id, {**(rec.instance or {}), "destroyed_at": time.time()})


def pull_and_mark_safe(rec: JobRecord, dest: Path, places: Places, console: Console) -> int:
    """Pulls the job's artifacts; only when every file came whole is the host told its results
    are safe (a rented host may then go). A refused file keeps the host: RemoteError names it."""
    with agent_for(rec, places) as client:
        result = pull(client, rec.job_dir, rec.artifacts or ["outputs/"], dest, console)
        if result.refused:
            raise RemoteError(f"the pull of job {rec.id} refused {len(result.refused)} file(s): "
                              f"{', '.join(result.refused[:3])}",
                              "the instance is kept: look at it (tether ssh), then tether down")
        client.call("mark-safe", rec.job_dir, "--how", "pulled")
    return len(result.pulled) + len(result.unchanged)


def _mirror(rec: JobRecord, places: Places, console: Console) -> None:
    from launcher.transfer.laptop_backups import sync_to_laptop

    try:
        with agent_for(rec, places) as client:
            for name in sync_to_laptop(client, rec, places, console):
                console.print(f"job {rec.id}: backup {name} mirrored to this laptop")
    except TetherError as exc:
        console.print(f"[yellow]warning:[/] mirroring job {rec.id}'s backups failed: {inert(exc.line())}")


def auto_publish(rec: JobRecord, places: Places, console: Console, environ: Mapping[str, str],
                 spend=None) -> None:
    """`publish:` in the spec: once, when a tether command first sees the job SUCCEEDED."""
    from launcher.hub.publish import publish

    conf = (rec.spec or {}).get("publish") or {}
    dest = results_dir(places, rec)
    marker = dest / ".tether-published"
    if not conf.get("repo") or marker.exists():
        return
    try:
        with agent_for(rec, places) as client:
            pull(client, rec.job_dir, ["outputs/", "code/MODEL_CARD.md"], dest, console)
        done = publish(rec, dest, conf["repo"], bool(conf.get("private", True)), environ, console, spend,
                       user_card=dest / "code" / "MODEL_CARD.md")
        marker.write_text(done.url + "\n")
        console.print(f"job {rec.id} succeeded: published to {done.url} (spec publish:)")
    except TetherError as exc:
        console.print(f"[yellow]warning:[/] publishing job {rec.id} failed: {inert(exc.line())} "
                      f"(retried on the next tether command, or run tether publish)")


def settle(views: List[JobView], places: Places, registry: Registry, console: Console,
           environ: Mapping[str, str]) -> None:
    """After any status read: a rented job that ended with autodown gets its results pulled
    and its instance destroyed; one without autodown is pointed out (it is still billing)."""
    for v in views:
        rec = v.record
        if rec.mirror == "laptop" and v.state not in (JobState.UNREACHABLE, JobState.LOST) \
                and not rec.in_kernel:
            _mirror(rec, places, console)
        if v.state == JobState.SUCCEEDED and not rec.in_kernel:
            auto_publish(rec, places, console, environ, v.spend_usd)
        if not rec.instance_alive or not (v.state.is_terminal or v.state == JobState.LOST):
            continue
        if not rec.autodown:
            console.print(f"[yellow]warning:[/] job {rec.id} has ended but its {inert(rec.instance['provider'])} "
                          f"instance {inert(rec.instance['id'])} is still running (and billing): `tether down {rec.id}`")
            continue
        try:
            dest = results_dir(places, rec)
            if v.state != JobState.LOST:
                n = pull_and_mark_safe(rec, dest, places, console)
                console.print(f"job {rec.id} ended ({v.state.value}): {n} result file(s) in {dest}")
            destroy_instance(rec, places, registry, environ)
            console.print(f"destroyed {inert(rec.instance['provider'])} instance {inert(rec.instance['id'])} (autodown)")
        except TetherError as exc:
            console.print(f"[yellow]warning:[/] autodown of job {rec.id} did not finish: {inert(exc.line())}")
