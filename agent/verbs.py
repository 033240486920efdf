"""The agent's command line, as a table: each verb, what it is for, and its arguments
(`python -m agent <verb> ...`; __main__.py runs the verb)."""

from __future__ import annotations

import argparse
from typing import Any, Dict, List, Tuple

from .hostops import LOG_FILES

Arg = Tuple[str, Dict[str, Any]]
JOB: Arg = ("job_dir", {})
ROOT_PROJECT: List[Arg] = [("root", {}), ("project", {})]

VERBS: Dict[str, Tuple[str, List[Arg]]] = {
    "run": ("supervise a job in the foreground (start does it detached)",
            [JOB, ("--secrets-on-stdin", {"action": "store_true", "help": "a JSON object of secrets on stdin"})]),
    "manifest": ("the project's code: path -> size, mode, sha256",
                 ROOT_PROJECT + [("--known", {"action": "append", "default": None,
                                              "help": "a manifest digest the laptop has: then only the digest is sent"})]),
    "receive": ("changed code files as a tar on stdin", ROOT_PROJECT),
    "create-job": ("the job folder and its code snapshot (the payload on stdin)", ROOT_PROJECT + [("job_id", {})]),
    "start": ("start the job's agent, detached (secrets, a JSON object, on stdin)", [JOB]),
    "inventory": ("what the job folder holds worth pulling", [JOB]),
    "discard-job": ("remove a job folder no agent has run (a failed launch)", [JOB]),
    "launch": ("a whole launch's host side over stdin/stdout: lock, manifest, create, start", ROOT_PROJECT),
    "spec": ("the job's spec (no secrets are in it)", [JOB]),
    "prepare-resume": ("refuses a running or finished job", [JOB]),
    "status": ("jobs as this host sees them", [("job_dir", {"nargs": "+"})]),
    "stop": ("ask the job to stop", [JOB, ("--reason", {"default": "stop requested"})]),
    "mark-safe": ("outputs are off the host: a rented host may go", [JOB, ("--how", {"default": "pulled"})]),
    "logs": ("a log's tail, and what follows it", [
        JOB, ("--tail", {"type": int, "default": 100}), ("--follow", {"action": "store_true"}),
        ("--file", {"choices": sorted(LOG_FILES), "default": "workload"}),
        ("--framed", {"action": "store_true", "help": "each chunk behind a header: @inode offset length"}),
        ("--from", {"dest": "start", "help": "INODE:OFFSET: continue after what a dropped follower got"})]),
    "list-files": ("files to pull, with their sizes", [JOB, ("paths", {"nargs": "+"})]),
    "read-files": ("the files asked for on stdin, framed", [JOB]),
    "backup": ("take one backup (run by the agent, at low priority)",
               [JOB, ("source", {}), ("step", {}), ("mode", {"choices": ["link", "copy"]})]),
    "backups": ("list a job's backups, verified",
                [JOB, ("--no-check", {"action": "store_true", "help": "list without re-hashing every file"})]),
    "receive-backup": ("a backup as a tar on stdin; kept only if it verifies", [JOB, ("name", {})]),
    "hub-mirror": ("push one backup to the job's Hub mirror (request on stdin)", [JOB, ("name", {})]),
    "hub-fetch": ("the newest verified backup from the job's Hub mirror (request on stdin)", [JOB]),
    "hub-upload": ("publish outputs to the Hub from here (request on stdin)", [JOB]),
    "hub-check": ("a Hub repo's state (request on stdin)", []),
    "hub-newest": ("a Hub repo's newest backup (request on stdin)", []),
    "history": ("metric history read incrementally (request on stdin)", []),
    "serve": ("a JSON-lines status channel over stdin/stdout", [("root", {})]),
}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m agent")
    sub = ap.add_subparsers(dest="verb", required=True)
    for verb, (what, arguments) in VERBS.items():
        p = sub.add_parser(verb, help=what)
        for name, options in arguments:
            p.add_argument(name, **options)
    return ap
