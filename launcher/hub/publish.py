"""`tether publish`: a verified pull, a model card, then the one upload (agent/hub_upload.py)
run here over the pulled results, or on the host with --from-host. One commit: nothing
half-published under the final name; unchanged files are skipped by the library, so
publishing twice uploads nothing the second time."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

from rich.console import Console

from launcher.errors import UsageError
from launcher.hub.client import answered, request, run_here
from launcher.hub.model_card import generate, read_training
from launcher.registry import JobRecord
from launcher.transport.agent_client import AgentClient

AGAIN = "run publish again: files that already arrived are skipped"


@dataclass(frozen=True)
class Published:
    url: str
    uploaded: bool      # False: the Hub already had exactly these files
    files: int


def staging_folder(results: Path) -> Path:
    """What goes up: the exported model when there is one, else all the outputs."""
    model = results / "outputs" / "model"
    return model if model.is_dir() else results / "outputs"


def _published(answer: dict, repo: str) -> Published:
    got = answered(answer, repo, "publishing to", AGAIN)
    return Published(url=str(got.get("url")), uploaded=bool(got.get("uploaded")), files=int(got.get("files") or 0))


def publish(rec: JobRecord, results: Path, repo: str, private: bool, environ: Mapping[str, str],
            console: Console, spend: Optional[float] = None) -> Published:
    """results: the job folder's outputs/ (and code/MODEL_CARD.md, the user's own card), pulled."""
    folder = staging_folder(results)
    if not folder.is_dir() or not any(folder.iterdir()):
        raise UsageError(f"job {rec.id} has no outputs to publish", "it writes them into TETHER_OUTPUT_DIR")
    req = request(environ, repo, private=private, message=f"tether: {rec.name} (job {rec.id})",
                  card=generate(repo, rec, read_training(folder), spend))
    return _published(run_here("hub-upload", req, str(results)), repo)


def publish_from_host(rec: JobRecord, client: AgentClient, results: Path, repo: str, private: bool,
                      environ: Mapping[str, str], console: Console, spend: Optional[float] = None) -> Published:
    """The card is made here (from the job's training.json, pulled), the upload happens there;
    the token travels on stdin and is never written on the host."""
    import json

    from launcher.transfer.pull import pull

    pull(client, rec.job_dir, ["outputs/training.json"], results, console)
    req = request(environ, repo, private=private, message=f"tether: {rec.name} (job {rec.id})",
                  card=generate(repo, rec, read_training(results / "outputs"), spend))
    answer = client.call("hub-upload", rec.job_dir, input=json.dumps(req).encode(), timeout=24 * 3600)
    return _published(answer, repo)
