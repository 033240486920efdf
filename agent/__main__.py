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

from . import codetree, hostops
from .paths import JobDir, Root
from .protocol import SIZES_ONLY_ENV, STATUS_RECENT_ENV


def _emit(obj: object) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m agent")
    sub = ap.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("run", help="supervise a job in the foreground (start does it detached)")
    p.add_argument("job_dir")
    p.add_argument("--secrets-on-stdin", action="store_true", help="a JSON object of secrets on stdin")
    for verb in ("manifest", "receive"):
        p = sub.add_parser(verb)
        p.add_argument("root")
        p.add_argument("project")
        if verb == "manifest":
            p.add_argument("--known", action="append", default=None,
                           help="a manifest digest the laptop has: then only the digest is sent")
    p = sub.add_parser("create-job")
    p.add_argument("root")
    p.add_argument("project")
    p.add_argument("job_id")
    p = sub.add_parser("start", help="secrets (a JSON object) on stdin")
    p.add_argument("job_dir")
    p = sub.add_parser("inventory", help="what the job folder holds worth pulling")
    p.add_argument("job_dir")
    p = sub.add_parser("discard-job", help="remove a job folder no agent has run (a failed launch)")
    p.add_argument("job_dir")
    p = sub.add_parser("lock", help="hold the project's launch lock until stdin ends")
    p.add_argument("root")
    p.add_argument("project")
    p = sub.add_parser("spec", help="the job's spec (no secrets are in it)")
    p.add_argument("job_dir")
    p = sub.add_parser("prepare-resume", help="refuses a running or finished job")
    p.add_argument("job_dir")
    p = sub.add_parser("status")
    p.add_argument("job_dir", nargs="+")
    p = sub.add_parser("stop")
    p.add_argument("job_dir")
    p.add_argument("--reason", default="stop requested")
    p = sub.add_parser("mark-safe", help="outputs are off the host: a rented host may go")
    p.add_argument("job_dir")
    p.add_argument("--how", default="pulled")
    p = sub.add_parser("logs")
    p.add_argument("job_dir")
    p.add_argument("--tail", type=int, default=100)
    p.add_argument("--follow", action="store_true")
    p.add_argument("--file", choices=sorted(hostops.LOG_FILES), default="workload")
    p.add_argument("--framed", action="store_true", help="each chunk behind a header: @inode offset length")
    p.add_argument("--from", dest="start", help="INODE:OFFSET: continue after what a dropped follower got")
    p = sub.add_parser("list-files")
    p.add_argument("job_dir")
    p.add_argument("paths", nargs="+")
    p = sub.add_parser("read-files")
    p.add_argument("job_dir")
    p = sub.add_parser("backup", help="take one backup (run by the agent, at low priority)")
    p.add_argument("job_dir")
    p.add_argument("source")
    p.add_argument("step")
    p.add_argument("mode", choices=["link", "copy"])
    p = sub.add_parser("backups", help="list a job's backups, verified")
    p.add_argument("job_dir")
    p.add_argument("--no-check", action="store_true", help="list without re-hashing every file")
    p = sub.add_parser("receive-backup", help="a backup as a tar on stdin; kept only if it verifies")
    p.add_argument("job_dir")
    p.add_argument("name")
    p = sub.add_parser("hub-mirror", help="push one backup to the job's Hub mirror (request on stdin)")
    p.add_argument("job_dir")
    p.add_argument("name")
    p = sub.add_parser("hub-fetch", help="the newest verified backup from the job's Hub mirror (request on stdin)")
    p.add_argument("job_dir")
    p = sub.add_parser("hub-upload", help="publish outputs to the Hub from here (request on stdin)")
    p.add_argument("job_dir")
    for verb in ("hub-check", "hub-newest"):
        sub.add_parser(verb, help="a Hub repo's state (request on stdin)")
    sub.add_parser("history", help="metric history read incrementally (request on stdin)")
    p = sub.add_parser("serve")
    p.add_argument("root")
    args = ap.parse_args(argv)

    try:
        return _dispatch(args)
    except (ValueError, OSError, KeyError) as exc:
        print(str(exc), file=sys.stderr)  # the launcher says what was being done
        return 2
    except BrokenPipeError:  # the reader went away (Ctrl-C on `tether logs -f`)
        return 0


def _dispatch(args: argparse.Namespace) -> int:
    verb = args.verb
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    if verb == "run":
        from .supervisor import main_run
        return main_run(args.job_dir, args.secrets_on_stdin)
    if verb == "backup":
        from .backup import main_take
        return main_take(args.job_dir, args.source, args.step, args.mode)
    if verb == "backups":
        from .backup import backup_summary
        _emit(backup_summary(JobDir(args.job_dir), check=not args.no_check))
        return 0
    if verb == "hub-mirror":
        from .hub_mirror import main_push
        return main_push(args.job_dir, args.name)
    if verb == "hub-fetch":
        from .hub_mirror import main_fetch
        return main_fetch(args.job_dir)
    if verb == "history":
        from .history import main_history
        _emit(main_history(json.loads(stdin.read() or b"null")))
        return 0
    if verb == "receive-backup":
        _emit(hostops.receive_backup(JobDir(args.job_dir), args.name, stdin))
        return 0
    if verb == "manifest":
        root = Root(args.root)
        code, cache = root.code(args.project), root.code_manifest_cache(args.project)
        _emit(codetree.manifest(code, cache) if args.known is None else codetree.manifest_unless(code, cache, args.known))
    elif verb == "receive":
        _emit(codetree.apply_delta(Root(args.root).code(args.project), stdin))
    elif verb == "create-job":
        payload = json.loads(stdin.read())
        _emit(hostops.create_job(Root(args.root), args.project, args.job_id, payload))
    elif verb == "inventory":
        _emit(hostops.inventory(JobDir(args.job_dir)))
    elif verb == "discard-job":
        _emit(hostops.discard_job(JobDir(args.job_dir)))
    elif verb == "lock":
        root = Root(args.root)
        code = root.code(args.project)
        codetree.hold_project_lock(root.code_lock(args.project),
                                   lambda: (codetree.clean_temp_files(code), root.clean_rsync_temp(args.project)),
                                   stdin, stdout)
    elif verb == "start":
        raw = stdin.read()
        result = hostops.start(JobDir(args.job_dir), json.loads(raw) if raw.strip() else {})
        _emit(result)
        return 0 if result["started"] else 1
    elif verb == "spec":
        from .files import read_json
        _emit((read_json(JobDir(args.job_dir).spec) or {}).get("spec"))
    elif verb == "prepare-resume":
        _emit(hostops.prepare_resume(JobDir(args.job_dir)))
    elif verb == "status":
        recent = os.environ.get(STATUS_RECENT_ENV, "")
        rows = min(int(recent), 512) if recent.isdigit() else 0
        _emit([hostops.status(JobDir(p), rows) for p in args.job_dir])
    elif verb == "stop":
        _emit(hostops.request_stop(JobDir(args.job_dir), args.reason))
    elif verb == "mark-safe":
        _emit(hostops.mark_results_safe(JobDir(args.job_dir), args.how))
    elif verb == "logs":
        hostops.logs(JobDir(args.job_dir), args.file, args.tail, args.follow, stdout, args.framed, args.start)
    elif verb == "list-files":
        _emit(codetree.list_tree(Path(args.job_dir), args.paths, hashes=os.environ.get(SIZES_ONLY_ENV) != "1"))
    elif verb == "read-files":
        codetree.send_files(Path(args.job_dir), json.loads(stdin.read()), stdout)
    elif verb in ("hub-upload", "hub-check", "hub-newest"):
        _emit(_hub_verb(verb, args, json.loads(stdin.read())))
    elif verb == "serve":
        hostops.serve(Root(args.root), stdin, stdout)
    return 0


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
