"""The agent's command line: each verb, what it is for, and its arguments (a table argparse
reads), and the function that runs it (`python -m agent <verb> ...`; __main__.py calls main,
except for `status`, which it runs without loading this module).

Every verb prints one JSON object on stdout (except logs/read-files, which stream), and on
failure one line on stderr and a non-zero exit. Inputs that could be large or secret come
on stdin, never on the command line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import IO, Any, Callable, Dict, List, Optional, Tuple

from . import codetree, hostops, pull_files
from .hostops import LOG_FILES
from .paths import JobDir, Root

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
    "discard-job": ("remove a job folder no agent has run (a failed launch)",
                    [JOB, ("--project", {"help": "the launch's project: its lock is waited for first"})]),
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
    "pull-files": ("a pull: lists the files asked for, then sends them framed (requests on stdin)", [JOB]),
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


def _emit(obj: object) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv: Optional[List[str]] = None) -> int:
    """Every verb but `status` (job_status.py), read by argparse and run."""
    args = parser().parse_args(argv)
    try:
        return _run_verb(args)
    except (ValueError, OSError, KeyError) as exc:
        print(str(exc), file=sys.stderr)  # the launcher says what was being done
        return 2
    except BrokenPipeError:  # the reader went away (Ctrl-C on `tether logs -f`)
        return 0


def _run_verb(args: argparse.Namespace) -> int:
    """A verb that answers one JSON object is emitted here; the others stream or have exit
    codes of their own."""
    if args.verb in _ANSWERS:
        _emit(_ANSWERS[args.verb](args, sys.stdin.buffer))
        return 0
    return _OTHERS[args.verb](args, sys.stdin.buffer, sys.stdout.buffer)


def _stdin_json(stdin: IO[bytes]) -> Any:
    return json.loads(stdin.read() or b"null")


def _manifest(args: argparse.Namespace, _stdin: IO[bytes]) -> Any:
    root = Root(args.root)
    code, cache = root.code(args.project), root.code_manifest_cache(args.project)
    return codetree.manifest(code, cache) if args.known is None else codetree.manifest_unless(code, cache, args.known)


def _spec(args: argparse.Namespace, _stdin: IO[bytes]) -> Any:
    from .files import read_json

    return (read_json(JobDir(args.job_dir).spec) or {}).get("spec")


def _backups(args: argparse.Namespace, _stdin: IO[bytes]) -> Any:
    from .backup import backup_summary

    return backup_summary(JobDir(args.job_dir), check=not args.no_check)


def _history(_args: argparse.Namespace, stdin: IO[bytes]) -> Any:
    from .history import main_history

    return main_history(_stdin_json(stdin))


_ANSWERS: Dict[str, Callable[[argparse.Namespace, IO[bytes]], Any]] = {
    "manifest": _manifest,
    "receive": lambda a, stdin: _counts(codetree.apply_delta(Root(a.root).code(a.project), stdin)),
    "create-job": lambda a, stdin: hostops.create_job(Root(a.root), a.project, a.job_id, json.loads(stdin.read())),
    "inventory": lambda a, _: hostops.inventory(JobDir(a.job_dir)),
    "discard-job": lambda a, _: hostops.discard_job(JobDir(a.job_dir), a.project),
    "spec": _spec,
    "prepare-resume": lambda a, _: hostops.prepare_resume(JobDir(a.job_dir)),
    "stop": lambda a, _: hostops.request_stop(JobDir(a.job_dir), a.reason),
    "mark-safe": lambda a, _: hostops.mark_results_safe(JobDir(a.job_dir), a.how),
    "backups": _backups,
    "history": _history,
    "receive-backup": lambda a, stdin: hostops.receive_backup(JobDir(a.job_dir), a.name, stdin),
    "hub-upload": lambda a, stdin: _hub_verb("hub-upload", a, _stdin_json(stdin)),
    "hub-check": lambda a, stdin: _hub_verb("hub-check", a, _stdin_json(stdin)),
    "hub-newest": lambda a, stdin: _hub_verb("hub-newest", a, _stdin_json(stdin)),
}


def _counts(applied: dict) -> dict:
    """What `receive` answers: the counts (a first sync's names would be a megabyte)."""
    return {"received": applied["received"], "deleted": applied["deleted"]}


def _job_status(job_dirs: List[str]) -> int:
    from .job_status import main_status

    return main_status(job_dirs)


def _start(args: argparse.Namespace, stdin: IO[bytes], _stdout: IO[bytes]) -> int:
    raw = stdin.read()
    result = hostops.start(JobDir(args.job_dir), json.loads(raw) if raw.strip() else {})
    _emit(result)
    return 0 if result["started"] else 1


def _launch(args: argparse.Namespace, stdin: IO[bytes], stdout: IO[bytes]) -> int:
    from .launch_session import serve_launch

    return serve_launch(Root(args.root), args.project, stdin, stdout)


def _supervise(args: argparse.Namespace, _stdin: IO[bytes], _stdout: IO[bytes]) -> int:
    from .run_job import main_run

    return main_run(args.job_dir, args.secrets_on_stdin)


def _take_backup(args: argparse.Namespace, _stdin: IO[bytes], _stdout: IO[bytes]) -> int:
    from .backup import main_take

    return main_take(args.job_dir, args.source, args.step, args.mode)


def _hub_mirror(args: argparse.Namespace, _stdin: IO[bytes], _stdout: IO[bytes]) -> int:
    from .hub_mirror import main_fetch, main_push

    return main_push(args.job_dir, args.name) if args.verb == "hub-mirror" else main_fetch(args.job_dir)


def _streamed(fn: Callable[..., Any]) -> Callable[[argparse.Namespace, IO[bytes], IO[bytes]], int]:
    def run(args: argparse.Namespace, stdin: IO[bytes], stdout: IO[bytes]) -> int:
        fn(args, stdin, stdout)
        return 0
    return run


_OTHERS: Dict[str, Callable[[argparse.Namespace, IO[bytes], IO[bytes]], int]] = {
    "run": _supervise,
    "backup": _take_backup,
    "hub-mirror": _hub_mirror,
    "hub-fetch": _hub_mirror,
    "start": _start,
    "status": lambda a, _in, _out: _job_status(a.job_dir),   # when __main__ did not take it (a `--` in it)
    "launch": _launch,
    "logs": _streamed(lambda a, _in, out: hostops.logs(JobDir(a.job_dir), a.file, a.tail, a.follow, out,
                                                       a.framed, a.start)),
    "pull-files": _streamed(lambda a, stdin, out: pull_files.session(Path(a.job_dir), stdin, out)),
    "serve": _streamed(lambda a, stdin, out: hostops.serve(Root(a.root), stdin, out)),
}


def _hub_verb(verb: str, args: argparse.Namespace, req: dict) -> dict:
    """The Hub verbs the launcher also runs on the laptop (one client, one upload)."""
    from .hub_client import keep_memory_private
    from .hub_mirror import newest_on_hub
    from .hub_upload import check_repo, upload

    keep_memory_private()
    try:
        if verb == "hub-upload":
            return upload(JobDir(args.job_dir), req)
        return check_repo(req) if verb == "hub-check" else newest_on_hub(req)
    except ValueError as exc:  # no library, nothing to publish: said as it is
        return {"ok": False, "kind": "usage", "status": None, "error": str(exc)}
