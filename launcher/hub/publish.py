"""`tether publish`: a verified pull, a model card, then one upload through huggingface_hub
(one commit: nothing half-published under the final name; unchanged files are skipped by the
library, so publishing twice uploads nothing the second time)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

from rich.console import Console

from launcher.errors import AuthError, RemoteError, UsageError
from launcher.hub.client import hub_api, hub_errors, hub_token, xet_disabled
from launcher.registry import JobRecord
from launcher.hub.model_card import generate, read_training

LARGE_FOLDER_BYTES = 5 * 1024 ** 3   # above this, the library's resumable multi-commit upload
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


def publish(rec: JobRecord, results: Path, repo: str, private: bool, environ: Mapping[str, str],
            console: Console, spend: Optional[float] = None, user_card: Optional[Path] = None) -> Published:
    folder = staging_folder(results)
    if not folder.is_dir() or not any(folder.iterdir()):
        raise UsageError(f"job {rec.id} has no outputs to publish", "it writes them into TETHER_OUTPUT_DIR")
    card = folder / "README.md"
    if user_card is not None and user_card.is_file():
        shutil.copyfile(user_card, card)           # the user's own card wins
    elif not card.exists():
        card.write_text(generate(repo, rec, read_training(folder), spend))
    api = hub_api(environ)
    files = [p for p in folder.rglob("*") if p.is_file()]
    with hub_errors(repo, "publishing to", AGAIN):
        url = api.create_repo(repo, private=private, exist_ok=True)
        before = api.repo_info(repo).sha
        if sum(p.stat().st_size for p in files) > LARGE_FOLDER_BYTES:
            api.upload_large_folder(repo_id=repo, folder_path=str(folder), repo_type="model", private=private)
        else:
            api.upload_folder(repo_id=repo, folder_path=str(folder),
                              commit_message=f"tether: {rec.name} (job {rec.id})")
        after = api.repo_info(repo).sha
    return Published(url=str(url), uploaded=before != after, files=len(files))


def publish_from_host(rec: JobRecord, client, results: Path, repo: str, private: bool,
                      environ: Mapping[str, str], console: Console, spend: Optional[float] = None) -> Published:
    """The card is made here (from the job's training.json, pulled), the upload happens there;
    the token travels on stdin and is never written on the host."""
    import json as _json

    from launcher.transfer.pull import pull

    try:
        pull(client, rec.job_dir, ["outputs/training.json"], results, console)
        card = generate(repo, rec, read_training(results / "outputs"), spend)
        request = {"token": hub_token(environ), "repo": repo, "private": private, "card": card,
                   "endpoint": environ.get("HF_ENDPOINT"), "message": f"tether: {rec.name} (job {rec.id})",
                   "disable_xet": xet_disabled(environ)}
        answer = client.call("hub-upload", rec.job_dir, input=_json.dumps(request).encode(), timeout=24 * 3600)
    except RemoteError as exc:
        if "refused" in exc.what or "401" in exc.what or "403" in exc.what:
            raise AuthError(exc.what, "check HF_TOKEN (it needs write access)") from None
        raise RemoteError(exc.what, AGAIN) from None
    return Published(url=answer["url"], uploaded=answer["uploaded"], files=answer["files"])
