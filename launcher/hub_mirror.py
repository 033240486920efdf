"""`backup: {mirror: hf://user/repo}`, the laptop's part. The host pushes each verified backup
itself (agent/mirror_keeper.py); here: check the token and the repo before a job starts (a
bad token never rents a host, a public repo never receives checkpoints), hand the host the
token as a secret, and for `tether resume --on` bring the newest verified backup down."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional

from rich.console import Console

from agent.codetree import safe_relpath
from agent.hub_mirror import remote_backups
from agent.mirror_keeper import TOKEN_SECRET

from .errors import NotFoundError, RemoteError, UsageError
from .hub import hub_api, hub_errors, hub_token, xet_disabled
from .pull import verify_pulled_backup

AGAIN = "run resume again"


@dataclass(frozen=True)
class HubMirror:
    repo: str
    token: str
    endpoint: Optional[str]
    disable_xet: Optional[bool]

    @property
    def secrets(self) -> Dict[str, str]:
        """Sent with the job's secrets (stdin, a 0600 file the agent deletes when it ends)."""
        return {TOKEN_SECRET: self.token}

    @property
    def job_fields(self) -> Dict[str, object]:
        return {"endpoint": self.endpoint, "disable_xet": self.disable_xet}


def repo_of(spec: Mapping) -> Optional[str]:
    """The hf:// mirror's repo of a spec as recorded (a dict), if it has one."""
    mirror = str((spec.get("backup") or {}).get("mirror") or "")
    return mirror[len("hf://"):] if mirror.startswith("hf://") else None


def for_job(repo: Optional[str], environ: Mapping[str, str]) -> Optional[HubMirror]:
    if repo is None:
        return None
    return HubMirror(repo, hub_token(environ), environ.get("HF_ENDPOINT") or None, xet_disabled(environ))


def check(mirror: HubMirror, environ: Mapping[str, str]) -> None:
    """The repo exists (created private if not) and the token may write there; a public repo
    is refused, since checkpoints would be readable by anyone."""
    api = hub_api(environ)
    with hub_errors(mirror.repo, "checking the backup mirror", "check the network and HF_ENDPOINT, then retry"):
        api.create_repo(mirror.repo, private=True, exist_ok=True)
        private = api.repo_info(mirror.repo).private
    if not private:
        raise UsageError(f"backup.mirror: hf://{mirror.repo} is a public repo: checkpoints there would be "
                         "readable by anyone", "make it private on the Hub, or name another repo")


def fetch_newest(mirror: HubMirror, environ: Mapping[str, str], dest: Path, console: Console) -> Path:
    """The newest backup in the repo that verifies against its manifest, downloaded into
    dest/<name>/ (through dest/.tmp-<name>/, so dest never holds half a backup). A damaged
    one is skipped for the one before it, and said so; a network failure stops here."""
    api = hub_api(environ)
    with hub_errors(mirror.repo, "reading the backup mirror", AGAIN):
        names = remote_backups(api, mirror.repo)
    dest.mkdir(parents=True, exist_ok=True)
    for name in reversed(names):
        folder = dest / name
        if not folder.is_dir():
            tmp = dest / f".tmp-{name}"
            try:
                problem = _download(api, mirror.repo, name, tmp)
                if problem is None:
                    os.replace(tmp / name, folder)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            if problem is not None:
                console.print(f"[yellow]skipping[/] backup {name} on the Hub: {problem}")
                continue
        try:
            verify_pulled_backup(folder)
        except RemoteError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            console.print(f"[yellow]skipping[/] backup {name} on the Hub: {exc.what}")
            continue
        for other in dest.iterdir():  # one downloaded backup is all a resume needs
            if other != folder:
                shutil.rmtree(other, ignore_errors=True)
        return folder
    raise NotFoundError(f"hf://{mirror.repo} holds no verified backup of this job",
                        "look for mirror-failed in the job's events (tether status)")


def _download(api, repo: str, name: str, tmp: Path) -> Optional[str]:
    """One backup folder into tmp/<name>/: None, or why it is not whole on the Hub. Raises
    RemoteError for the network."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    def get(path_in_repo: str) -> Path:
        return Path(hf_hub_download(repo, path_in_repo, local_dir=str(tmp), token=api.token,
                                    endpoint=api.endpoint))

    with hub_errors(repo, "reading the backup mirror", AGAIN):
        try:
            manifest = json.loads(get(f"{name}/MANIFEST.json").read_text())
            for f in manifest["files"]:
                get(f"{name}/data/{safe_relpath(f['path'])}")  # nothing may land outside tmp
        except EntryNotFoundError as exc:
            return f"a file is missing ({str(exc).splitlines()[0]})"
        except (ValueError, KeyError, TypeError) as exc:
            return f"its manifest is not usable ({exc})"
    return None
