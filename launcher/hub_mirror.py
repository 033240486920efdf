"""`backup: {mirror: hf://user/repo}`, the laptop's part. The host pushes each verified backup
itself (agent/mirror_keeper.py); here: check the token and the repo before a job starts (a
bad token never rents a host, a public repo never receives checkpoints), hand the host the
token as a secret, and for `tether resume --on` find the newest backup (the new host downloads
it itself when it can; else it comes down here, then up)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional

from rich.console import Console

from agent.hub_mirror import download_newest, remote_backups
from agent.mirror_keeper import TOKEN_SECRET

from .errors import NotFoundError, UsageError
from .hub import hub_api, hub_errors, hub_token, xet_disabled

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

    @property
    def request(self) -> Dict[str, object]:
        """For `agent hub-fetch`, on its stdin."""
        return {"token": self.token, "repo": self.repo, **self.job_fields}


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


def newest_name(mirror: HubMirror, environ: Mapping[str, str]) -> str:
    """The newest backup folder in the repo (checked before anything is rented for a move)."""
    with hub_errors(mirror.repo, "reading the backup mirror", AGAIN):
        names = remote_backups(hub_api(environ), mirror.repo)
    if not names:
        raise NotFoundError(f"hf://{mirror.repo} holds no backup of this job",
                            "look for mirror-failed in the job's events (tether status)")
    return names[-1]


def fetch_newest(mirror: HubMirror, environ: Mapping[str, str], dest: Path, console: Console) -> Path:
    """The newest backup in the repo that verifies, downloaded to this laptop into dest/<name>/
    (a damaged one is skipped for the one before it, and said so)."""
    api = hub_api(environ)
    with hub_errors(mirror.repo, "reading the backup mirror", AGAIN):
        name = download_newest(api, mirror.repo, dest, lambda n, why: skipped(console, n, why))
    if name is None:
        raise NotFoundError(f"hf://{mirror.repo} holds no verified backup of this job",
                            "look for mirror-failed in the job's events (tether status)")
    for other in dest.iterdir():  # one downloaded backup is all a resume needs
        if other.name != name:
            shutil.rmtree(other, ignore_errors=True)
    return dest / name


def skipped(console: Console, name: str, problem: str) -> None:
    console.print(f"[yellow]skipping[/] backup {name} on the Hub: {problem}")
