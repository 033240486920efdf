"""`python -m agent <verb>`: the agent's command line on the host.

Every verb prints one JSON object on stdout (except logs/read-files, which stream), and on
failure one line on stderr and a non-zero exit. Inputs that could be large or secret come
on stdin, never on the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from typing import IO, Any, Callable, Dict

from . import codetree, hostops
from .paths import JobDir, Root
from .protocol import SIZES_ONLY_ENV, STATUS_RECENT_ENV
from .verbs import parser


def _emit(obj: object) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv=None) -> int:
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


def _status(args: argparse.Namespace, _stdin: IO[bytes]) -> Any:
    recent = os.environ.get(STATUS_RECENT_ENV, "")
    rows = min(int(recent), 512) if recent.isdigit() else 0
    return [hostops.status(JobDir(p), rows) for p in args.job_dir]


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
    "receive": lambda a, stdin: codetree.apply_delta(Root(a.root).code(a.project), stdin),
    "create-job": lambda a, stdin: hostops.create_job(Root(a.root), a.project, a.job_id, json.loads(stdin.read())),
    "inventory": lambda a, _: hostops.inventory(JobDir(a.job_dir)),
    "discard-job": lambda a, _: hostops.discard_job(JobDir(a.job_dir)),
    "spec": _spec,
    "prepare-resume": lambda a, _: hostops.prepare_resume(JobDir(a.job_dir)),
    "status": _status,
    "stop": lambda a, _: hostops.request_stop(JobDir(a.job_dir), a.reason),
    "mark-safe": lambda a, _: hostops.mark_results_safe(JobDir(a.job_dir), a.how),
    "list-files": lambda a, _: codetree.list_tree(Path(a.job_dir), a.paths,
                                                   hashes=os.environ.get(SIZES_ONLY_ENV) != "1"),
    "backups": _backups,
    "history": _history,
    "receive-backup": lambda a, stdin: hostops.receive_backup(JobDir(a.job_dir), a.name, stdin),
    "hub-upload": lambda a, stdin: _hub_verb("hub-upload", a, _stdin_json(stdin)),
    "hub-check": lambda a, stdin: _hub_verb("hub-check", a, _stdin_json(stdin)),
    "hub-newest": lambda a, stdin: _hub_verb("hub-newest", a, _stdin_json(stdin)),
}


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
    "launch": _launch,
    "logs": _streamed(lambda a, _in, out: hostops.logs(JobDir(a.job_dir), a.file, a.tail, a.follow, out,
                                                       a.framed, a.start)),
    "read-files": _streamed(lambda a, stdin, out: codetree.send_files(Path(a.job_dir), json.loads(stdin.read()), out)),
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


if __name__ == "__main__":
    sys.exit(main())
