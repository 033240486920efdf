"""The dashboard's buttons: each calls what the matching CLI command calls (the job's handle,
launcher.backends) and answers with the line the command would print."""

from __future__ import annotations

import io
import os
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from rich.console import Console

from contextlib import contextmanager
from typing import Iterator

from launcher.backends import Context, JobHandle, handle_for
from launcher.dashboard.data import Monitor
from launcher.errors import UsageError
from launcher.jobs.publishing import publish_results
from launcher.lean.pulling import on_node
from launcher.registry import Registry

Answer = Dict[str, Any]
REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


def _quiet() -> Console:
    return Console(file=io.StringIO(), width=120)


@contextmanager
def _handle(m: Monitor, job: str) -> Iterator[JobHandle]:
    """The job's handle, with a registry of this request's own (the server runs in threads)."""
    registry = Registry(m.places.registry)
    try:
        yield handle_for(m.record(job), Context(m.places, registry, os.environ))
    finally:
        registry.close()


def stop(m: Monitor, job: str, body: Dict[str, Any]) -> Answer:
    with _handle(m, job) as h:
        asked = h.stop("stopped from the dashboard")
    return {"message": asked.message + (": it stops after its grace period" if asked.wait else "")}


def resume(m: Monitor, job: str, body: Dict[str, Any]) -> Answer:
    rec = m.record(job)
    with _handle(m, job) as h:
        previous = h.resume()
    m.forget_detail(rec.id)
    return {"message": f"resumed job {rec.id} (was {previous}); it continues from its newest verified backup"}


def checked_node(given: object) -> Optional[int]:
    """The page's node pick ({"node": K} in an action, ?node=K in a read), or None: the job's own
    (node 0 of a multi-node job). Anything but a small whole number is one line (a 400)."""
    if given is None:
        return None
    if type(given) is str and given.isascii() and given.isdigit() and len(given) <= 4:
        return int(given)
    if type(given) is int and given >= 0:
        return given
    raise UsageError("node is a node's number (0, 1, ...) of a multi-node job", "pick one on the page")


def pull(m: Monitor, job: str, body: Dict[str, Any]) -> Answer:
    """Into ./<name>-<id> of the folder `tether ui` runs in, as `tether pull JOB` there; node K
    of a multi-node job (the page always names one) into its node-K/ there, as `tether pull
    --all-nodes` puts it."""
    rec = m.record(job)
    node = checked_node(body.get("node"))
    dest = Path(f"{rec.name}-{rec.id}") / (f"node-{node}" if node is not None else "")
    with _handle(m, job) as h:
        result = on_node(h, node, False, "pull").pull(dest, None, _quiet())
    return {"message": f"pulled {len(result.pulled)} file(s) into {dest.resolve()}"
                       + (f", {len(result.unchanged)} already there" if result.unchanged else "")
                       + (f"; {len(result.refused)} refused" if result.refused else "")}


def publish(m: Monitor, job: str, body: Dict[str, Any]) -> Answer:
    repo = body.get("repo")
    if not isinstance(repo, str) or not REPO.fullmatch(repo):
        raise UsageError("publish needs a Hub repo as user/name", "type it in the prompt")
    rec = m.record(job)
    registry = Registry(m.places.registry)
    try:
        done = publish_results(rec, Context(m.places, registry, os.environ), repo, body.get("private") is not False,
                               body.get("from_host") is True, _quiet())
    finally:
        registry.close()
    if done.uploaded:
        return {"message": f"published {done.files} file(s) to {done.url}"}
    return {"message": f"nothing changed: {done.url} already has these {done.files} file(s)"}


def verify(m: Monitor, job: str, body: Dict[str, Any]) -> Answer:
    """Every backup re-hashed against its manifest (tether backups), on a connection of its own;
    node K's of a multi-node job."""
    node = checked_node(body.get("node"))
    with _handle(m, job) as h:
        items = on_node(h, node, False, "backups").backups(check=True)
    return {"backups": [asdict(b) for b in items],
            "message": f"{sum(1 for b in items if b.verified)} of {len(items)} backup(s) verify"}


ACTIONS: Dict[str, Callable[[Monitor, str, Dict[str, Any]], Answer]] = {
    "stop": stop, "resume": resume, "pull": pull, "publish": publish, "verify": verify}
