"""`tether publish --from-host`: the upload goes straight from the GPU host (its uplink, no
round trip through the laptop). huggingface_hub must be installed on the host (hub_client).
The token arrives on stdin and lives only in this process."""

from __future__ import annotations

import shutil
from typing import Any, Dict

from .hub_client import api_for, one_line
from .paths import JobDir


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
    repo = req["repo"]
    try:
        url = api.create_repo(repo, private=bool(req.get("private", True)), exist_ok=True)
        before = api.repo_info(repo).sha
        api.upload_folder(repo_id=repo, folder_path=str(folder), commit_message=req.get("message") or "tether")
        after = api.repo_info(repo).sha
    except Exception as exc:  # one line back to the launcher, whatever the library raised
        raise ValueError(f"upload to {repo} failed ({one_line(exc)})") from None
    files = sum(1 for p in folder.rglob("*") if p.is_file())
    return {"url": str(url), "uploaded": before != after, "files": files}
