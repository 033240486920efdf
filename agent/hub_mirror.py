"""`backup.mirror: hf://user/repo`: verified backups to and from a private Hub repo.

`python -m agent hub-mirror JOB_DIR NAME` (run by the MirrorKeeper at low priority, the
request with the token on stdin) makes one commit: the backup's folder (data/ and
MANIFEST.json, under NAME/) added, and folders beyond the newest `keep` deleted. A commit is
all or nothing on the Hub, so a folder there is always whole. Prints one JSON line.

Node K of a multi-node job does the same under node-K/ in the repo (the request's prefix,
paths.node_prefix): it lists, adds and prunes there only, so nodes never touch each other's
backups. A one-host job's prefix is "": the repo's top level, as before.

`python -m agent hub-fetch JOB_DIR` (run by `tether resume --on` on the new host) downloads
the newest backup there that verifies into the job's backups/, straight from the Hub. The
laptop uses the same download_newest when the host cannot (no huggingface_hub there yet).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from . import backup
from .hub_client import api_for, failure, keep_memory_private, one_line
from .paths import BACKUP_MANIFEST, JobDir, backup_order, backup_step, is_backup_name, is_node_prefix, remove_inside


def prefix_of(req: Dict[str, Any]) -> str:
    prefix = req.get("prefix") or ""
    if not is_node_prefix(prefix):
        raise ValueError(f"{str(prefix)[:40]!r} is not a node's folder in the mirror (node-K/)")
    return prefix


def _entries(api, repo: str, prefix: str) -> list:
    """The entries directly under prefix ("" = the top level); none when that folder is not
    there yet (looked up at the top first: a missing folder's listing is an error)."""
    if not prefix:
        return list(api.list_repo_tree(repo, recursive=False))
    if not any(e.path == prefix[:-1] for e in api.list_repo_tree(repo, recursive=False)):
        return []
    return list(api.list_repo_tree(repo, path_in_repo=prefix[:-1], recursive=False))


def remote_backups(api, repo: str, prefix: str = "") -> List[str]:
    """Folders under prefix named like backups (without the prefix), oldest first (anything
    else the user keeps there is left alone)."""
    from huggingface_hub import RepoFolder

    names = [e.path[len(prefix):] for e in _entries(api, repo, prefix)
             if isinstance(e, RepoFolder) and e.path.startswith(prefix) and is_backup_name(e.path[len(prefix):])]
    return sorted(names, key=backup_order)


def push(job: JobDir, name: str, req: Dict[str, Any]) -> Dict[str, Any]:
    if not is_backup_name(name):
        return {"ok": False, "error": f"{name[:60]!r} is not a backup name: not pushed"}
    try:
        prefix = prefix_of(req)
    except ValueError as exc:
        return {"ok": False, "error": str(exc)}
    folder = job.backups / name
    if backup.load(folder) is None:
        return {"ok": False, "gone": True, "error": f"backup {name} is not on the host (pruned)"}
    problem = backup.verify_folder(folder)  # only whole backups leave the host
    if problem:
        return {"ok": False, "error": f"backup {name} does not verify ({problem}): not pushed"}
    try:
        api = api_for(req, "backup.mirror: hf://")
    except ValueError as exc:  # no library here: waiting will not fix it
        return {"ok": False, "no_library": True, "error": str(exc)}
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    repo, keep = req["repo"], max(1, int(req.get("keep", 3)))
    try:
        api.create_repo(repo, private=True, exist_ok=True)
        remote = remote_backups(api, repo, prefix)
        kept = sorted(set(remote) | {name}, key=backup_order)[-keep:]
        gone = [n for n in remote if n not in kept]
        ops: list = []
        if name not in remote:
            ops += [CommitOperationAdd(path_in_repo=f"{prefix}{name}/{p.relative_to(folder).as_posix()}",
                                       path_or_fileobj=str(p))
                    for p in sorted(folder.rglob("*")) if p.is_file()]
        ops += [CommitOperationDelete(path_in_repo=f"{prefix}{n}/", is_folder=True) for n in gone]
        if ops:
            step = backup.load(folder).step
            api.create_commit(repo, operations=ops,
                              commit_message=f"tether backup {prefix}{name}" + (f" (step {step})" if step is not None else ""))
    except Exception as exc:  # one line back to the agent, whatever the library raised
        return {"ok": False, "error": f"push to {repo} failed ({one_line(exc)})"}
    return {"ok": True, "name": name, "pruned": gone, "remote": kept}


OUTPUTS_IN_REPO = "outputs"  # the job's final outputs/, beside the backup folders


def push_outputs(job: JobDir, req: Dict[str, Any]) -> Dict[str, Any]:
    """The job's outputs/ as the repo's outputs/ folder (node K's: node-K/outputs/), in one
    commit (what the repo held there before is replaced): so a rented host can go once its
    results are off it."""
    try:
        api = api_for(req, "backup.mirror: hf://")
    except ValueError as exc:
        return {"ok": False, "no_library": True, "error": str(exc)}
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    prefix = prefix_of(req)
    there = f"{prefix}{OUTPUTS_IN_REPO}"
    files = [(p, p.relative_to(job.outputs).as_posix()) for p in sorted(job.outputs.rglob("*"))
             if p.is_file() and not p.is_symlink()]
    ops: list = [CommitOperationDelete(path_in_repo=f"{there}/", is_folder=True)]
    ops += [CommitOperationAdd(path_in_repo=f"{there}/{rel}", path_or_fileobj=str(p)) for p, rel in files]
    try:
        if not any(e.path == there for e in _entries(api, req["repo"], prefix)):
            ops = ops[1:]  # nothing there to replace
        api.create_commit(req["repo"], operations=ops, commit_message="tether: the job's outputs/")
    except Exception as exc:
        return {"ok": False, "error": f"push of outputs/ to {req['repo']} failed ({one_line(exc)})"}
    return {"ok": True, "files": len(files)}


def main_push(job_dir: str, name: str) -> int:
    """NAME is a backup, or `outputs/` for the job's final outputs."""
    keep_memory_private()
    try:
        os.nice(10)  # below the training loop, above nothing that matters
    except OSError:
        pass
    try:
        job, req = JobDir(Path(job_dir)), json.loads(sys.stdin.read())
        result = push_outputs(job, req) if name == "outputs/" else push(job, name, req)
    except (ValueError, OSError, KeyError) as exc:
        result = {"ok": False, "error": str(exc)}
    print(json.dumps(result))
    return 0 if result.get("ok") else 1


def download_newest(api, repo: str, dest: Path, skip: Callable[[str, str], None], prefix: str = "",
                    step: Optional[int] = None) -> Optional[str]:
    """The newest backup under prefix in the repo (of that step, when given: a multi-node
    job's nodes resume from one step) that verifies against its manifest, as dest/<name>/
    (built in dest/.tmp-<name>/, so dest never holds half a backup): its name, or None. A
    damaged one goes to skip(name, problem) and the one before it is tried. The library's
    network errors propagate: retrying is the answer to those, not an older backup."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in reversed(remote_backups(api, repo, prefix)):
        if step is not None and backup_step(name) != step:
            continue
        folder = dest / name
        if backup.load(folder) is not None and backup.verify_folder(folder) is None:
            return name  # already here and whole
        tmp = dest / f".tmp-{name}"
        try:
            problem = _download(api, repo, prefix, name, tmp) or backup.verify_folder(tmp / prefix / name)
            if problem is None:
                backup.seal(tmp / prefix / name)
                remove_inside(folder, dest)
                os.replace(tmp / prefix / name, folder)
                return name
        finally:
            remove_inside(tmp, dest)
        skip(name, problem)
    return None


def _download(api, repo: str, prefix: str, name: str, tmp: Path) -> Optional[str]:
    """One backup folder into tmp/<prefix><name>/: None, or why it is not whole on the Hub."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    from .codetree import safe_relpath

    def get(path_in_repo: str) -> Path:
        return Path(hf_hub_download(repo, path_in_repo, local_dir=str(tmp), token=api.token,
                                    endpoint=api.endpoint))

    try:
        manifest = json.loads(get(f"{prefix}{name}/{BACKUP_MANIFEST}").read_text())
        for f in manifest["files"]:
            get(f"{prefix}{name}/data/{safe_relpath(f['path'])}")  # nothing may land outside tmp
    except EntryNotFoundError as exc:
        return f"a file is missing ({str(exc).splitlines()[0]})"
    except (ValueError, KeyError, TypeError) as exc:
        return f"its manifest is not usable ({exc})"
    return None


def newest_on_hub(req: Dict[str, Any]) -> Dict[str, Any]:
    """The newest backup folder in the repo (`hub-newest`), or None; with `prefixes` (a
    multi-node job's node-K/), every backup name under each, oldest first."""
    api = api_for(req, "the Hub")
    prefixes = req.get("prefixes")
    prefixes = [prefix_of({"prefix": p}) for p in prefixes] if isinstance(prefixes, list) else None
    try:
        if prefixes is not None:
            return {"ok": True, "names": [remote_backups(api, req["repo"], p) for p in prefixes]}
        names = remote_backups(api, req["repo"])
    except Exception as exc:
        return failure(exc)
    return {"ok": True, "name": names[-1] if names else None}


def main_fetch(job_dir: str) -> int:
    """Prints {"ok": true, name, step, skipped}, or {"ok": false, "no_library": true} when this
    host cannot talk to the Hub yet (the launcher then brings the backup itself)."""
    keep_memory_private()
    job = JobDir(Path(job_dir))
    req = json.loads(sys.stdin.read())
    try:
        api = api_for(req, "fetching a backup from the Hub")
    except ValueError as exc:
        print(json.dumps({"ok": False, "no_library": True, "error": str(exc)}))
        return 0
    skipped: List[dict] = []
    prefix, step = prefix_of(req), req.get("step")
    if step is not None and type(step) is not int:
        raise ValueError(f"step {str(step)[:20]!r} is not a step number")
    try:
        name = download_newest(api, req["repo"], job.backups,
                               lambda n, why: skipped.append({"name": n, "problem": why}), prefix, step)
    except Exception as exc:  # the network: an answer, and a retry is what to do
        print(json.dumps({**failure(exc), "error": f"reading hf://{req['repo']} failed ({one_line(exc)})"}))
        return 0
    if name is None:
        raise ValueError(f"hf://{req['repo']}" + (f"/{prefix[:-1]}" if prefix else "") + " holds no verified backup"
                         + (f" of step {step}" if step is not None else "")
                         + (f" ({len(skipped)} damaged)" if skipped else ""))
    found = backup.load(job.backups / name)
    print(json.dumps({"ok": True, "name": name, "step": found.step if found else None, "skipped": skipped}))
    return 0
