"""The end of a rented host's life: its results pulled and marked safe, its instance
destroyed (`tether down`, autodown, a move to another host)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Mapping

from rich.console import Console

from provisioning.base import Instance

from launcher.backends import Context, handle_for
from launcher.errors import RemoteError
from launcher.jobs.rent import destroy, provider_for
from launcher.registry import JobRecord, Registry
from launcher.settings import Places


def results_dir(places: Places, rec: JobRecord) -> Path:
    return places.data / "results" / f"{rec.name}-{rec.id}"


def destroy_instance(rec: JobRecord, places: Places, registry: Registry, environ: Mapping[str, str]) -> None:
    inst = Instance(**{k: v for k, v in (rec.instance or {}).items() if k in Instance.model_fields})
    destroy(provider_for(inst.provider, places, environ), inst)
    registry.set_instance(rec.id, {**(rec.instance or {}), "destroyed_at": time.time()})


def pull_and_mark_safe(rec: JobRecord, dest: Path, ctx: Context, console: Console) -> int:
    """Pulls the job's artifacts; only when every file came whole is the host told its results
    are safe (a rented host may then go). A refused file keeps the host: RemoteError names it."""
    handle = handle_for(rec, ctx)
    result = handle.pull(dest, None, console)
    if result.refused:
        raise RemoteError(f"the pull of job {rec.id} refused {len(result.refused)} file(s): "
                          f"{', '.join(result.refused[:3])}",
                          "the instance is kept: look at it (tether ssh), then tether down")
    handle.mark_results_safe("pulled")  # type: ignore[attr-defined]  (a job that reaches its host)
    return len(result.pulled) + len(result.unchanged)
