"""What the laptop does on its own when it looks at jobs (`tether status`, `jobs`, `watch`):
one named step, run after a status read, whose every action is printed as it acts, so a
read command never surprises. For jobs whose host tether reaches:

- backup.mirror: laptop: new verified backups come to the laptop (from every node of a
  multi-node job, each node's to its own folder);
- publish: in the spec: a SUCCEEDED job is published once (a multi-node job: node 0's
  outputs, where rank 0 writes the model, as `tether publish` takes them);
- a rented instance whose job has ended: with autodown, its results are pulled and it is
  destroyed (never when the pull refused a file); without, a warning that it still bills.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List

from agent.protocol import JobState

from launcher.backends import Context, handle_for
from launcher.errors import TetherError
from launcher.jobs.view import JobView
from launcher.registry import JobRecord
from launcher.text import inert

if TYPE_CHECKING:
    from rich.console import Console


def reconcile(views: List[JobView], ctx: Context, console: Console) -> None:
    for v in views:
        rec = v.record
        if rec.nodes:  # several hosts of your own: mirrored node by node; nothing rented to end
            if rec.mirror == "laptop":
                _mirror_nodes(v, ctx, console)
            if v.state == JobState.SUCCEEDED:
                _auto_publish(rec, ctx, console, v.spend_usd)  # node 0's outputs, as `tether publish`
            continue
        if not handle_for(rec, ctx).reaches_host:
            continue
        if rec.mirror == "laptop" and v.state not in (JobState.UNREACHABLE, JobState.LOST):
            _mirror(rec, ctx, console)
        if v.state == JobState.SUCCEEDED:
            _auto_publish(rec, ctx, console, v.spend_usd)
        if rec.instance_alive and (v.state.is_terminal or v.state == JobState.LOST):
            _end_instance(v, ctx, console)


def _mirror(rec: JobRecord, ctx: Context, console: Console) -> None:
    from launcher.transfer.laptop_backups import sync_to_laptop

    try:
        with handle_for(rec, ctx).client() as client:  # type: ignore[attr-defined]
            for name in sync_to_laptop(client, rec, ctx.places, console):
                console.print(f"job {rec.id}: backup {inert(name)} mirrored to this laptop")
    except TetherError as exc:
        console.print(f"[yellow]warning:[/] mirroring job {rec.id}'s backups failed: {inert(exc.line())}")


def _mirror_nodes(v: JobView, ctx: Context, console: Console) -> None:
    """Every node's backups, node K's into the mirror's node-K/ (the nodes in reach)."""
    from launcher.transfer.laptop_backups import sync_to_laptop

    rec = v.record
    for k, (node, seen) in enumerate(zip(handle_for(rec, ctx).nodes, v.nodes or [])):  # type: ignore[attr-defined]
        if seen.state in (JobState.UNREACHABLE, JobState.LOST):
            continue
        try:
            with node.client() as client:
                for name in sync_to_laptop(client, node.record, ctx.places, console, node=k):
                    console.print(f"job {rec.id}: node {k}'s backup {inert(name)} mirrored to this laptop")
        except TetherError as exc:
            console.print(f"[yellow]warning:[/] mirroring job {rec.id}'s node {k} backups failed: "
                          f"{inert(exc.line())}")


def _auto_publish(rec: JobRecord, ctx: Context, console: Console, spend) -> None:
    """`publish:` in the spec: once, when a tether command first sees the job SUCCEEDED."""
    conf = (rec.spec or {}).get("publish") or {}
    if not conf.get("repo"):  # most jobs: the Hub client and the spec's models stay unloaded
        return
    from launcher.hub.publish import publish
    from launcher.jobs.lifecycle import results_dir

    dest = results_dir(ctx.places, rec)
    marker = dest / ".tether-published"
    if marker.exists():
        return
    try:
        handle_for(rec, ctx).pull(dest, ["outputs/", "code/MODEL_CARD.md"], console)
        done = publish(rec, dest, conf["repo"], bool(conf.get("private", True)), ctx.environ, console, spend)
        marker.write_text(done.url + "\n")
        console.print(f"job {rec.id} succeeded: published to {done.url} (spec publish:)")
    except TetherError as exc:
        console.print(f"[yellow]warning:[/] publishing job {rec.id} failed: {inert(exc.line())} "
                      f"(retried on the next tether command, or run tether publish)")


def _end_instance(v: JobView, ctx: Context, console: Console) -> None:
    from launcher.jobs.lifecycle import destroy_instance, pull_and_mark_safe, results_dir

    rec = v.record
    what = f"{inert(rec.instance['provider'])} instance {inert(rec.instance['id'])}"
    if not rec.autodown:
        console.print(f"[yellow]warning:[/] job {rec.id} has ended but its {what} is still running (and billing): "
                      f"`tether down {rec.id}`")
        return
    try:
        dest = results_dir(ctx.places, rec)
        if v.state != JobState.LOST:
            n = pull_and_mark_safe(rec, dest, ctx, console)
            console.print(f"job {rec.id} ended ({v.state.value}): {n} result file(s) in {dest}")
        destroy_instance(rec, ctx.places, ctx.registry, ctx.environ)
        console.print(f"destroyed {what} (autodown)")
    except TetherError as exc:
        console.print(f"[yellow]warning:[/] autodown of job {rec.id} did not finish: {inert(exc.line())}")
