"""Publishing to the Hub, the one upload both ends use: `tether publish` runs it on the laptop
over the pulled results, `--from-host` on the GPU host (its uplink, no round trip through the
laptop; huggingface_hub must be installed there). The token arrives on stdin and lives only in
this process. Failures are answers (hub_client.failure), never a traceback."""

from __future__ import annotations

import shutil
from typing import Any, Dict

from .hub_client import api_for, failure
from .paths import JobDir

LARGE_FOLDER_BYTES = 5 * 1024 ** 3   # above this, the library's resumable multi-commit upload


def upload(job: JobDir, req: Dict[str, Any]) -> Dict[str, Any]:
    api = api_for(req, "publish --from-host")
    folder = job.outputs / "model" if (job.outputs / "model").is_dir() else job.outputs
    if not folder.is_dir() or not any(folder.iterdir()):
        raise ValueError(f"no outputs to publish in {folder}")
    card = folder / "README.md"
    user_card = job.code / "MODEL_CARD.md"
    if user_card.is_file():
        shutil.copyfile(user_card, card)  # the user's own card wins
    elif not card.exists() and req.get("card"):
        card.write_text(req["card"])
    repo, private = req["repo"], bool(req.get("private", True))
    files = [p for p in folder.rglob("*") if p.is_file()]
    try:
        url = api.create_repo(repo, private=private, exist_ok=True)
        before = api.repo_info(repo).sha
        if sum(p.stat().st_size for p in files) > LARGE_FOLDER_BYTES:  # resumable, several commits
            api.upload_large_folder(repo_id=repo, folder_path=str(folder), repo_type="model", private=private)
        else:  # one commit: nothing half-published under the final name
            api.upload_folder(repo_id=repo, folder_path=str(folder), commit_message=req.get("message") or "tether")
        after = api.repo_info(repo).sha
    except Exception as exc:  # an answer, whatever the library raised
        return failure(exc)
    return {"ok": True, "url": str(url), "uploaded": before != after, "files": len(files)}


def check_repo(req: Dict[str, Any]) -> Dict[str, Any]:
    """The repo exists (made private if not); whether it is private (`hub-check`)."""
    api = api_for(req, "the Hub")
    try:
        api.create_repo(req["repo"], private=True, exist_ok=True)
        return {"ok": True, "private": bool(api.repo_info(req["repo"]).private)}
    except Exception as exc:
        return failure(exc)
