"""`tether publish`: a finished job's model (or outputs) with its card to the Hub, from the
laptop after a verified pull, or straight from the host. The CLI and the dashboard both call
this."""

from __future__ import annotations

from rich.console import Console

from agent.protocol import JobState

from launcher.backends import Context, Unsupported, handle_for, observe
from launcher.errors import UsageError
from launcher.hub.publish import Published, publish, publish_from_host
from launcher.jobs.lifecycle import results_dir
from launcher.registry import JobRecord


def publish_results(rec: JobRecord, ctx: Context, repo: str, private: bool, from_host: bool,
                    console: Console) -> Published:
    view = observe([rec], ctx.places, ctx.registry, ctx.environ)[0]
    if view.state != JobState.SUCCEEDED:
        raise UsageError(f"job {rec.id} is {view.state.value}, not SUCCEEDED", "publish a job that finished")
    handle = handle_for(rec, ctx)
    results = results_dir(ctx.places, rec)
    if from_host:
        if not handle.reaches_host:
            raise Unsupported(f"job {rec.id} has no host to publish from", "publish it from here (no --from-host)")
        with handle.client() as client:  # type: ignore[attr-defined]
            return publish_from_host(rec, client, results, repo, private, ctx.environ, console, view.spend_usd)
    handle.pull(results, ["outputs/", "code/MODEL_CARD.md"], console)
    return publish(rec, results, repo, private, ctx.environ, console, view.spend_usd)
