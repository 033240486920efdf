"""What `tether stop`, `resume`, `pull` and `publish` do, as plain functions: the commands
print around them, and the dashboard's buttons call the very same code."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Mapping, Optional

from rich.console import Console

from agent.protocol import JobState, StatusAnswer

from launcher.errors import UsageError
from launcher.transport.targets import agent_for
from launcher.registry import JobRecord, Registry
from launcher.jobs.lifecycle import results_dir
from launcher.jobs.observe import observe
from launcher.hub.publish import Published
from launcher.transfer.pull import PullResult, list_backups, pick_backup, pull, verify_pulled_backup
from launcher.jobs.resume import resume
from launcher.settings import Places


@dataclass(frozen=True)
class StopAsked:
    message: str
    agent_alive: bool       # False: nothing to wait for (tether stopped what the agent left)


def ask_stop(rec: JobRecord, places: Places) -> StopAsked:
    """Asks the job's agent to stop (SIGTERM, grace, final backup); for a LOST job, the host
    kills the orphaned workload itself."""
    if rec.in_kernel:
        from launcher.backends.kaggle import kernel_stop
        kernel_stop(rec, os.environ)
        return StopAsked(f"asked Kaggle to cancel job {rec.id}'s kernel", agent_alive=False)
    with agent_for(rec, places) as client:
        asked = client.call("stop", rec.job_dir, "--reason", "stopped by tether stop")
    if isinstance(asked, dict) and asked.get("agent_alive") is False:
        killed = asked.get("killed_workload")
        return StopAsked(f"job {rec.id}'s agent was not running: "
                         + (f"killed its orphaned workload (pgid {killed}) and " if killed else "")
                         + "marked it STOPPED", agent_alive=False)
    return StopAsked(f"asked job {rec.id} to stop", agent_alive=True)


def wait_stopped(rec: JobRecord, places: Places, registry: Registry, timeout: float) -> StatusAnswer:
    """The job's answer once it has ended (or when timeout runs out); the registry follows."""
    with agent_for(rec, places) as client:
        channel = client.channel(rec.remote_root)
        answer = channel.wait_for_end(rec.id, timeout)
        channel.close()
    registry.set_state(rec.id, answer.state.value)
    return answer


def resume_here(rec: JobRecord, places: Places, registry: Registry, environ: Mapping[str, str]) -> str:
    """Starts the job's agent again on its host; the state it was in."""
    with agent_for(rec, places) as client:
        return resume(client, rec, environ, registry)


def pull_results(rec: JobRecord, places: Places, dest: Path, console: Console,
                 backup: Optional[str] = None, paths: Optional[List[str]] = None) -> PullResult:
    """The job's artifacts (or the paths asked for, or one backup, verified here) into dest."""
    if rec.in_kernel:
        if backup is not None:
            raise UsageError("a Kaggle job's backups are in its kernel output", "tether pull JOB brings its artifacts")
        from launcher.backends.kaggle import kernel_pull
        return kernel_pull(rec, dest, os.environ)
    with agent_for(rec, places) as client:
        paths = list(paths or rec.artifacts or ["outputs/"])
        if backup is not None:
            paths = [f"backups/{pick_backup(list_backups(client, rec.job_dir), backup)}/"]
        result = pull(client, rec.job_dir, paths, dest, console)
        if backup is not None:
            verify_pulled_backup(dest / paths[0])
    return result


def publish_results(rec: JobRecord, places: Places, registry: Registry, repo: str, private: bool,
                    from_host: bool, console: Console, environ: Mapping[str, str]) -> Published:
    """A finished job's model (or outputs) with its card to the Hub: from here after a
    verified pull, or straight from the host."""
    from launcher.hub.publish import publish, publish_from_host

    view = observe([rec], places, registry)[0]
    if view.state != JobState.SUCCEEDED:
        raise UsageError(f"job {rec.id} is {view.state.value}, not SUCCEEDED", "publish a job that finished")
    results = results_dir(places, rec)
    with agent_for(rec, places) as client:
        if from_host:
            return publish_from_host(rec, client, results, repo, private, environ, console, view.spend_usd)
        pull(client, rec.job_dir, ["outputs/", "code/MODEL_CARD.md"], results, console)
    return publish(rec, results, repo, private, environ, console, view.spend_usd,
                   user_card=results / "code" / "MODEL_CARD.md")
