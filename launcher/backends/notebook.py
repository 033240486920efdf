"""A job from `tether colab-notebook`: it runs wherever the notebook is opened, and nothing
connects to it. Its hf:// mirror is the only thing tether can see of it, and what
`tether resume --on` carries it on from once the session has ended."""

from __future__ import annotations

import json
import secrets as pysecrets
import time
from pathlib import Path
from typing import Dict, List, Mapping

from rich.console import Console

from agent.protocol import JobState

from launcher.backends.base import CannotReach, Context, Unsupported
from launcher.backends.kaggle_kernel import SESSION_HOURS, kernel_script
from launcher.errors import SpecError, TetherError, UsageError
from launcher.hub import backups as hub_mirror
from launcher.jobs.view import JobView
from launcher.registry import JobRecord
from launcher.spec import LoadedSpec
from launcher.transfer import sync


def colab_notebook(loaded: LoadedSpec, tree: sync.LocalTree, command: str,
                   environ: Mapping[str, str]) -> tuple:
    """A notebook that runs the job directly in a Colab runtime: no tunnel, nothing to attach.
    The same self-contained script as a Kaggle kernel, working in /content; an hf:// mirror is
    checked now, as a launch would, and the cell reads HF_TOKEN from Colab's Secrets."""
    if loaded.spec.secrets:
        raise SpecError(f"{loaded.path.name}: secrets: a generated notebook would carry them in its source",
                        "set them in the notebook (Colab's Secrets panel) instead")
    hub = hub_mirror.checked_for_job(loaded.spec.backup.hub_repo, environ)
    job_id = pysecrets.token_hex(4)
    hours = loaded.spec.host.session_hours or SESSION_HOURS
    script = kernel_script(loaded, tree, job_id, command, int(hours * 3600), working="/content",
                           hub_fields=hub.job_fields if hub else None)
    intro = (f"# {loaded.spec.name} (tether job {job_id})\n\nRun the cell below: it unpacks the tether agent "
             "and your code and runs the job, stopping with a final backup before the session's end. "
             f"Results: `/content/tether/jobs/{job_id}/outputs/`.")
    nb = {"nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"},
                       "accelerator": "GPU", "colab": {"provenance": []}},
          "cells": [{"cell_type": "markdown", "metadata": {}, "source": intro.splitlines(True)},
                    {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                     "source": script.splitlines(True)}]}
    return job_id, json.dumps(nb, indent=1)


def notebook_record(loaded: LoadedSpec, job_id: str, notebook: Path) -> JobRecord:
    """What the laptop keeps of a notebook job: enough for `tether resume --on` to carry it
    on from its hf:// mirror once the Colab session has ended."""
    spec = loaded.spec
    return JobRecord(
        id=job_id, name=spec.name, project=spec.name, spec_hash=loaded.spec_hash, provider="colab",
        endpoint={"kind": "notebook", "file": str(notebook)}, remote_root="/content/tether",
        job_dir=f"/content/tether/jobs/{job_id}", python="python3", runtime_dir="",
        artifacts=list(spec.artifacts), created=time.time(),
        spec=spec.model_dump(mode="json"), workdir=str(loaded.workdir))


class NotebookJob(CannotReach):
    def __init__(self, record: JobRecord, ctx: Context) -> None:
        self.record, self.ctx = record, ctx

    def label(self) -> str:
        return self.label_of(self.record)

    @staticmethod
    def label_of(rec: JobRecord) -> str:
        return f"colab-notebook:{rec.endpoint['file']}"

    def why(self) -> Unsupported:
        rec = self.record
        return Unsupported(f"job {rec.id} runs in a Colab notebook: there is no host to reach",
                           f"see it in Colab (results under /content/tether/jobs/{rec.id}/); once its session "
                           f"has ended, `tether resume {rec.id} --on HOST` carries it on from its hf:// mirror")

    @classmethod
    def observe_all(cls, handles: List["NotebookJob"], recent: int = 0) -> Dict[str, JobView]:
        return {h.record.id: h.observe() for h in handles}

    def observe(self) -> JobView:
        """Nothing connects to a notebook job; with an hf:// mirror, its newest pushed backup is
        what can be known of it."""
        r = self.record
        reason = f"runs in the Colab notebook {r.endpoint['file']}: tether cannot reach it"
        hub = None
        try:
            hub = hub_mirror.for_job(hub_mirror.repo_of(r.spec), self.ctx.environ)
            if hub is not None:
                reason += f"; newest backup on hf://{hub.repo}: {hub_mirror.newest_name(hub, self.ctx.environ)}"
        except TetherError as exc:
            reason += f"; {exc.what}" if hub is not None else f"; {exc.line()}"
        return JobView(r, JobState.UNREACHABLE, reason=reason, host=self.label())

    def before_move(self, console: Console) -> None:
        rec = self.record
        if hub_mirror.repo_of(rec.spec) is None:
            raise UsageError(f"job {rec.id} ran in a Colab notebook without backup.mirror: hf://...: its backups "
                             "never left the runtime", "launch it again (with a mirror, to carry it on next time)")
        # Nothing can ask the notebook; the user knows whether its session ended.
        console.print(f"[yellow]note:[/] tether cannot see whether job {rec.id}'s Colab notebook still runs: "
                      "if it does, stop it, or two copies will train")
