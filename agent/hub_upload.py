"""`tether publish --from-host`: the upload goes straight from the GPU host (its uplink, no
round trip through the laptop). huggingface_hub must be installed on the host; it is
imported only here, so the agent itself still needs nothing but the standard library.
The token arrives on stdin and lives only in this process."""

from __future__ import annotations

import shutil
from typing import Any, Dict

from .paths import JobDir


def upload(job: JobDir, req: Dict[str, Any]) -> Dict[str, Any]:
    try:
        from huggingface_hub import HfApi, constants
        from huggingface_hub.utils import disable_progress_bars
    except ImportError:
        raise ValueError("huggingface_hub is not installed on the host: install it there "
                         "(pip install huggingface_hub), or publish without --from-host") from None
    folder = job.outputs / "model" if (job.outputs / "model").is_dir() else job.outputs
    if not folder.is_dir() or not any(folder.iterdir()):
        raise ValueError(f"no outputs to publish in {folder}")
    card = folder / "README.md"
    user_card = job.code / "MODEL_CARD.md"
    if user_card.is_file():
        shutil.copyfile(user_card, card)  # the user's own card wins
    elif not card.exists() and req.get("card"):
        card.write_text(req["card"])
    if req.get("disable_xet") is not None:
        constants.HF_HUB_DISABLE_XET = bool(req["disable_xet"])
    disable_progress_bars()
    api = HfApi(endpoint=req.get("endpoint") or None, token=req["token"])
    repo = req["repo"]
    try:
        url = api.create_repo(repo, private=bool(req.get("private", True)), exist_ok=True)
        before = api.repo_info(repo).sha
        api.upload_folder(repo_id=repo, folder_path=str(folder), commit_message=req.get("message") or "tether")
        after = api.repo_info(repo).sha
    except Exception as exc:  # one line back to the launcher, whatever the library raised
        cause = exc.__cause__ or exc
        status = getattr(getattr(cause, "response", None), "status_code", None)
        raise ValueError(f"upload to {repo} failed ({status or type(cause).__name__}: "
                         f"{str(cause).splitlines()[0] if str(cause) else ''})") from None
    files = sum(1 for p in folder.rglob("*") if p.is_file())
    return {"url": str(url), "uploaded": before != after, "files": files}
