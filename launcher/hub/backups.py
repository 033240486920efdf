"""`backup: {mirror: hf://user/repo}`, the laptop's part. The host pushes each verified backup
itself (agent/mirror_keeper.py); here: check the token and the repo before a job starts (a
bad token never rents a host, a public repo never receives checkpoints), hand the host the
token as a secret, and for `tether resume --on` find the newest backup (the new host downloads
it itself when it can; else it comes down here, then up). A multi-node job's node K keeps its
backups under node-K/ in the repo: a move takes the newest step every node has there."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from rich.console import Console

from agent.paths import is_backup_name, remove_inside
from agent.protocol import HUB_MIRROR_TOKEN

from launcher.transport.agent_client import AgentClient
from launcher.errors import NoBackupError, RemoteError, UsageError
from launcher.hub.client import answered, hub_token, run_here, xet_disabled
from launcher.transport.host import LocalHost
from launcher.transport.bootstrap import local_runtime_dir
from launcher.text import inert

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
        return {HUB_MIRROR_TOKEN: self.token}

    @property
    def job_fields(self) -> Dict[str, object]:
        return {"endpoint": self.endpoint, "disable_xet": self.disable_xet}

    @property
    def request(self) -> Dict[str, object]:
        """For `agent hub-fetch`, on its stdin."""
        return {"token": self.token, "repo": self.repo, **self.job_fields}


def repo_of(spec: Optional[Mapping[str, object]]) -> Optional[str]:
    """The hf:// repo of a spec as the registry stored it, or None."""
    from launcher.spec import BackupSpec

    backup = (spec or {}).get("backup") or {}
    return BackupSpec.model_validate(backup).hub_repo if isinstance(backup, dict) else None


def for_job(repo: Optional[str], environ: Mapping[str, str]) -> Optional[HubMirror]:
    if repo is None:
        return None
    return HubMirror(repo, hub_token(environ), environ.get("HF_ENDPOINT") or None, xet_disabled(environ))


def checked_for_job(repo: Optional[str], environ: Mapping[str, str]) -> Optional[HubMirror]:
    """for_job, with the repo checked: what every launch does before anything starts."""
    mirror = for_job(repo, environ)
    if mirror is not None:
        check(mirror, environ)
    return mirror


def check(mirror: HubMirror, environ: Mapping[str, str]) -> None:
    """The repo exists (created private if not) and the token may write there; a public repo
    is refused, since checkpoints would be readable by anyone."""
    got = answered(run_here("hub-check", mirror.request, timeout=300), mirror.repo, "checking the backup mirror",
                   "check the network and HF_ENDPOINT, then retry")
    if not got.get("private"):
        raise UsageError(f"backup.mirror: hf://{mirror.repo} is a public repo: checkpoints there would be "
                         "readable by anyone", "make it private on the Hub, or name another repo")


def newest_name(mirror: HubMirror, environ: Mapping[str, str]) -> str:
    """The newest backup folder in the repo (checked before anything is rented for a move)."""
    got = answered(run_here("hub-newest", mirror.request, timeout=300), mirror.repo, "reading the backup mirror",
                   AGAIN)
    name = got.get("name")
    if name is None:
        raise NoBackupError(f"hf://{mirror.repo} holds no backup of this job",
                            "look for mirror-failed in the job's events (tether status)")
    if not is_backup_name(name):
        raise RemoteError(f"the Hub listing answered a name that is not a backup's: {str(name)[:60]!r}")
    return name


def common_step(mirror: HubMirror, prefixes: Sequence[str]) -> Tuple[int, List[str]]:
    """A multi-node job's move: the newest step with a backup under every node's prefix, and
    each node's backup of it (checked before anything starts on the new hosts)."""
    from launcher.transfer.node_backups import common_mirrored

    got = answered(run_here("hub-newest", {**mirror.request, "prefixes": list(prefixes)}, timeout=300),
                   mirror.repo, "reading the backup mirror", AGAIN)
    names = got.get("names")
    if not isinstance(names, list) or len(names) != len(prefixes) or not all(isinstance(n, list) for n in names):
        raise RemoteError("the Hub listing of the nodes' backups is not a list per node", AGAIN)
    return common_mirrored(names, f"hf://{mirror.repo}")


def fetch(client: AgentClient, job_dir: str, mirror: HubMirror, console: Console,
          where: Optional[Dict[str, Any]] = None) -> Optional[dict]:
    """`agent hub-fetch` where the client points: the newest verified backup from the Hub into
    job_dir/backups/ (where: a node's prefix and the step to take). Its answer ({name, step}),
    or None when that Python has no huggingface_hub. Damaged backups it skipped are said here."""
    req = {**mirror.request, **(where or {})}
    got = client.call("hub-fetch", job_dir, input=json.dumps(req).encode(), timeout=24 * 3600)
    if not isinstance(got, dict) or got.get("no_library"):
        return None
    for s in got.get("skipped") or []:
        if not isinstance(s, dict):  # the host's words: only what is understood is shown
            continue
        console.print(f"[yellow]skipping[/] backup {inert(s.get('name'))} on the Hub: {inert(s.get('problem'))}")
    if not got.get("ok") and got.get("kind") in ("network", "http"):  # its own words name the repo
        raise RemoteError(str(got.get("error"))[:300], AGAIN)
    return answered(got, mirror.repo, "reading the backup mirror", AGAIN)


def fetch_to_laptop(mirror: HubMirror, dest: Path, console: Console, where: Optional[Dict[str, Any]] = None) -> Path:
    """The same download run here, by tether's own Python, into dest/backups/<name>/ (the
    newest only: one is all a resume needs)."""
    client = AgentClient(LocalHost(), sys.executable, local_runtime_dir())
    got = fetch(client, str(dest), mirror, console, where)
    if got is None:
        raise UsageError("reading an hf:// mirror needs huggingface_hub", "pip install 'tether[hub]'")
    name = got.get("name")
    if not is_backup_name(name):
        raise RemoteError(f"the Hub download answered a name that is not a backup's: {str(name)[:60]!r}")
    folder = dest / "backups"
    for other in folder.iterdir():
        if other.name != name:
            remove_inside(other, folder, anchor=dest)
    return folder / name
