"""`backup.mirror: hf://user/repo`: one verified backup pushed to a private Hub repo.

`python -m agent hub-mirror JOB_DIR NAME` (run by the MirrorKeeper at low priority, the
request with the token on stdin) makes one commit: the backup's folder (data/ and
MANIFEST.json, under NAME/) added, and folders beyond the newest `keep` deleted. A commit is
all or nothing on the Hub, so a folder there is always whole. Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List

from . import backup
from .hub_client import api_for, one_line
from .paths import JobDir


def remote_backups(api, repo: str) -> List[str]:
    """Top-level folders of the repo named like backups, oldest first (anything else the user
    keeps there is left alone)."""
    from huggingface_hub import RepoFolder

    names = [e.path for e in api.list_repo_tree(repo, recursive=False)
             if isinstance(e, RepoFolder) and backup.NAME.match(e.path)]
    return sorted(names, key=backup.name_order)


def push(job: JobDir, name: str, req: Dict[str, Any]) -> Dict[str, Any]:
    folder = job.backups / name
    if backup.load(folder) is None:
        return {"ok": False, "gone": True, "error": f"backup {name} is not on the host (pruned)"}
    problem = backup.verify_folder(folder)  # only whole backups leave the host
    if problem:
        return {"ok": False, "error": f"backup {name} does not verify ({problem}): not pushed"}
    api = api_for(req, "backup.mirror: hf://")
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    repo, keep = req["repo"], max(1, int(req.get("keep", 3)))
    try:
        api.create_repo(repo, private=True, exist_ok=True)
        remote = remote_backups(api, repo)
        kept = sorted(set(remote) | {name}, key=backup.name_order)[-keep:]
        gone = [n for n in remote if n not in kept]
        ops: list = []
        if name not in remote:
            ops += [CommitOperationAdd(path_in_repo=f"{name}/{p.relative_to(folder).as_posix()}",
                                       path_or_fileobj=str(p))
                    for p in sorted(folder.rglob("*")) if p.is_file()]
        ops += [CommitOperationDelete(path_in_repo=f"{n}/", is_folder=True) for n in gone]
        if ops:
            step = backup.load(folder).step
            api.create_commit(repo, operations=ops,
                              commit_message=f"tether backup {name}" + (f" (step {step})" if step is not None else ""))
    except Exception as exc:  # one line back to the agent, whatever the library raised
        return {"ok": False, "error": f"push to {repo} failed ({one_line(exc)})"}
    return {"ok": True, "name": name, "pruned": gone, "remote": kept}


def main_push(job_dir: str, name: str) -> int:
    try:
        os.nice(10)  # below the training loop, above nothing that matters
    except OSError:
        pass
    try:
        result = push(JobDir(Path(job_dir)), name, json.loads(sys.stdin.read()))
    except (ValueError, OSError, KeyError) as exc:  # no library here: waiting will not fix it
        result = {"ok": False, "error": str(exc), "lasting": True}
    print(json.dumps(result))
    return 0 if result.get("ok") else 1
