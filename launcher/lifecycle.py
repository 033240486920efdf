"""The end of a rented host's life: `tether down`, autodown when a job has ended, and the
warning about instances still alive with no running job."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Mapping

from rich.console import Console

from agent.protocol import JobState
from provisioning.base import Instance

from .errors import TetherError
from .hosts import agent_for
from .jobs import JobRecord, Registry
from .observe import JobView
from .provision import destroy, provider_for
from .pull import pull
from .settings import Places


def results_dir(places: Places, rec: JobRecord) -> Path:
    return places.data / "results" / f"{rec.name}-{rec.id}"


def destroy_instance(rec: JobRecord, places: Places, registry: Registry, environ: Mapping[str, str]) -> None:
    inst = Instance(**{k: v for k, v in (rec.instance or {}).items() if k in Instance.model_fields})
    destroy(provider_for(inst.provider, places, environ), inst)
    registry.set_instance(rec.id, {**(rec.instance or {}), "destroyed_at": time.time()})


def pull_and_mark_safe(rec: JobRecord, dest: Path, places: Places, console: Console) -> int:
    with agent_for(rec, places) as client:
        result = pull(client, rec.job_dir, rec.artifacts or ["outputs/"], dest, console)
        client.call("mark-safe", rec.job_dir, "--how", "pulled")
    return len(result.pulled) + len(result.unchanged)


def _mirror(rec: JobRecord, places: Places, console: Console) -> None:
    from .mirror import sync_to_laptop

    try:
        with agent_for(rec, places) as client:
            for name in sync_to_laptop(client, rec, places, console):
                console.print(f"job {rec.id}: backup {name} mirrored to this laptop")
    except TetherError as exc:
        console.print(f"[yellow]warning:[/] mirroring job {rec.id}'s backups failed: {exc.line()}")


def auto_publish(rec: JobRecord, places: Places, console: Console, environ: Mapping[str, str],
                 spend=None) -> None:
    """`publish:` in the spec: once, when a tether command first sees the job SUCCEEDED."""
    from .publish import publish

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
        console.print(f"[yellow]warning:[/] publishing job {rec.id} failed: {exc.line()} "
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
            console.print(f"[yellow]warning:[/] job {rec.id} has ended but its {rec.instance['provider']} "
                          f"instance {rec.instance['id']} is still running (and billing): `tether down {rec.id}`")
            continue
        try:
            dest = results_dir(places, rec)
            if v.state != JobState.LOST:
                n = pull_and_mark_safe(rec, dest, places, console)
                console.print(f"job {rec.id} ended ({v.state.value}): {n} result file(s) in {dest}")
            destroy_instance(rec, places, registry, environ)
            console.print(f"destroyed {rec.instance['provider']} instance {rec.instance['id']} (autodown)")
        except TetherError as exc:
            console.print(f"[yellow]warning:[/] autodown of job {rec.id} did not finish: {exc.line()}")
