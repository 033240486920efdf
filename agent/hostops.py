"""What the launcher asks of a host: one function per verb, each called as
`python -m agent <verb> ...` over SSH (or locally), or through `serve`'s JSON-lines channel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import IO, Optional

from .book import AgentLock, StatusBook, agent_alive
from .files import read_json_object, write_bytes_atomic, write_json_atomic
from .paths import JobDir, Root, is_backup_name, remove_inside
from .job_status import MAX_RECENT, job_ended, status
from .protocol import JobState, code_digest, self_argv
from .signals import kill_stale_workload


CODE_NOT_SENT = ("the job's code on the host is not what this launch sent (did a file change while it was "
                 "sent?); launch again")


def create_job(root: Root, project: str, job_id: str, doc: dict, code_digest_now: Optional[str] = None,
               snapshot_now: bool = True, check_later: bool = False) -> dict:
    """The job folder, its code snapshot (checked against the launch's own manifest digest when
    it sends one), spec.json, and the teardown request (0600). Secrets, when a payload carries
    them (the Kaggle kernel's), go into a 0600 file the agent reads and deletes at once;
    `tether launch` sends them to `start` instead, so they never touch the disk. A payload
    this agent cannot read (another version, a bad field) is refused in one line.
    code_digest_now: the project code's digest, computed under the launch lock this call is
    made under (agent launch): when it is the launch's own, the code is not hashed again.
    snapshot_now=False: the caller makes the snapshot after (code_snapshot.py), still under
    the lock the code was checked under. check_later (with snapshot_now=False): the code is
    not hashed here; created["check_digest"] is the digest the snapshot's maker checks first."""
    from .codetree import manifest, snapshot
    from .payload import JobPayload

    payload = JobPayload.from_json(doc)
    job = root.job(job_id)
    if job.path.exists():
        raise ValueError(f"job {job_id} already exists on this host")
    job.make_dirs()
    created: dict = {"job_dir": str(job.path)}
    try:
        want = payload.job.code_digest
        if want and want != code_digest_now:
            if check_later and not snapshot_now:
                created["check_digest"] = want  # the snapshot's maker hashes it (code_snapshot.DigestCheck)
            # Under the lock, the project's code is what the snapshot links: checked before it.
            elif code_digest(manifest(root.code(project), root.code_manifest_cache(project))) != want:
                raise ValueError(CODE_NOT_SENT)
        if snapshot_now:
            created["files"] = snapshot(root.code(project), job.code)
        if payload.secrets:
            write_bytes_atomic(job.secrets, json.dumps(payload.secrets).encode(), mode=0o600)
        if payload.teardown:
            write_bytes_atomic(job.teardown, json.dumps(payload.teardown).encode(), mode=0o600)
        kept = payload.to_json()
        write_json_atomic(job.spec, {k: kept[k] for k in ("protocol", "spec", "job")})
    except BaseException:
        remove_inside(job.path, job.path.parent)  # nothing half-made is left behind
        raise
    key = payload.job.setup_key
    created["setup_done"] = bool(key) and root.setup_marker(key).exists()
    return created


SSH_SESSION_VARS = {"SSH_CLIENT", "SSH_CONNECTION", "SSH_TTY", "SSH2_CLIENT", "SSH_AUTH_SOCK", "SSH_ORIGINAL_COMMAND"}


def start(job: JobDir, secrets: Optional[dict] = None, wait_s: float = 60.0) -> dict:
    """Starts the agent detached (new session: it outlives this SSH command and the laptop).
    secrets go to it through a pipe, never a file."""
    job.logs.mkdir(parents=True, exist_ok=True)
    before = _mtime(job.state)
    # Not the SSH session's: it ends when the laptop goes, and with SSH_CLIENT set, Debian's
    # bash reads ~/.bashrc for every `bash -c` (a pyenv or conda init there would put another
    # python ahead of host.python's on the workload's PATH).
    env = {k: v for k, v in os.environ.items() if k not in SSH_SESSION_VARS}
    with open(job.agent_log, "ab") as log:
        proc = subprocess.Popen(
            self_argv("run", str(job.path), "--secrets-on-stdin"),
            cwd=str(job.path), env=env, stdin=subprocess.PIPE, stdout=log, stderr=log,
            start_new_session=True, close_fds=True,
        )
    assert proc.stdin is not None
    try:
        proc.stdin.write(json.dumps(secrets or {}).encode())
        proc.stdin.close()
    except OSError:
        pass  # it died at once: its log says why
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        # state.json is (re)written once the agent holds the job's lock; it may be done already
        if _mtime(job.state) != before or agent_alive(job):
            return {"pid": proc.pid, "started": True}
        if proc.poll() is not None:
            break
        time.sleep(0.01)  # a launch waits on this: the agent is up in a few hundred ms
    tail = job.agent_log.read_bytes()[-2000:].decode(errors="replace") if job.agent_log.exists() else ""
    return {"pid": proc.pid, "started": False, "exit_code": proc.poll(), "log_tail": tail}


def _mtime(path: Path) -> Optional[int]:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def prepare_resume(job: JobDir) -> dict:
    """Before `start` on an existing job: it must not be running or finished well. (Its
    secrets come again with `start`.)"""
    if not job.spec.exists():
        raise ValueError(f"no job at {job.path}")
    if agent_alive(job):
        raise ValueError("the job's agent is still running; stop it first or just watch it")
    state = (read_json_object(job.state)[0] or {}).get("state")
    if state == JobState.SUCCEEDED.value:
        raise ValueError("the job already succeeded; launch it again for a new run")
    try:
        job.stop_request.unlink()
    except FileNotFoundError:
        pass
    return {"previous_state": state}


def receive_backup(job: JobDir, name: str, stream: IO[bytes]) -> dict:
    """A backup brought from a mirror (the laptop or the Hub), unpacked beside the others; it
    is kept only if every file matches its manifest."""
    import tarfile

    from . import backup
    from .codetree import is_inside, safe_relpath

    if not is_backup_name(name):
        raise ValueError(f"{name[:60]!r} is not a backup name")
    job.backups.mkdir(parents=True, exist_ok=True)
    tmp = job.backups / f".tmp-{name}"
    remove_inside(tmp, job.backups, anchor=job.path)
    tmp.mkdir()
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                rel = safe_relpath(member.name)
                if member.isdir():
                    (tmp / rel).mkdir(parents=True, exist_ok=True)
                    continue
                if not member.isfile():
                    raise ValueError(f"refusing {rel!r} in a backup: only regular files")
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                if not is_inside((tmp / rel).parent, tmp):
                    raise ValueError(f"refusing {rel!r}: it leaves the backup folder")
                src = tar.extractfile(member)
                with open(tmp / rel, "wb") as f:
                    shutil.copyfileobj(src, f, 1 << 20)
        found, problem = backup.inspect(tmp, name)
        problem = problem or backup.verify_folder(tmp, name)
        if problem:
            raise ValueError(f"backup {name} does not verify: {problem}")
        backup.seal(tmp)
        dest = job.backups / name
        if dest.exists() or dest.is_symlink():
            remove_inside(dest, job.backups, anchor=job.path)
        os.replace(tmp, dest)
    except BaseException:
        remove_inside(tmp, job.backups, anchor=job.path)
        raise
    return {"backup": name, "step": found.step if found else None}


DISCARD_WAIT_S = 20.0   # under the laptop's 30 s for the call: a refusal is heard, not cut off


def discard_job(job: JobDir, project: Optional[str] = None, wait_s: float = DISCARD_WAIT_S) -> dict:
    """A launch that failed before its agent ever ran: its folder goes, so the host holds
    nothing the registry does not know. Refused once an agent has run it. project: the launch's,
    whose lock is taken first, so a create the laptop gave up on (its session may still be
    making the folder, before any guard exists) is waited for, wait_s at most, never cut into."""
    lock = _project_lock(job.root, project, wait_s) if project is not None else None
    try:
        if agent_alive(job) or job.state.exists():
            raise ValueError(f"job {job.path.name} has run on this host: stop it instead")
        from .code_snapshot import wait_for_code

        wait_for_code(job)  # a snapshot still being made would write into what is removed
        gone = remove_inside(job.path, job.path.parent)
    finally:
        if lock is not None:
            os.close(lock)
    return {"discarded": gone}


def _project_lock(root: Root, project: str, wait_s: float) -> int:
    """The project's launch lock (agent/launch_session.py holds it from manifest to snapshot),
    or ValueError after wait_s: then nothing is removed, and the host side ends (a process
    left blocked on the lock would remove the folder later, after the laptop gave up). Waited
    for as the launches wait for it (a blocking flock, ended by a timer), so a discard among
    queued launches of the project is not always the last to get it."""
    import fcntl
    import signal
    import threading

    path = root.code_lock(project)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if threading.current_thread() is not threading.main_thread():  # no timer signal there: polled
            _poll_lock(fd, wait_s)
            return fd

        def expired(_signum: int, _frame: object) -> None:
            raise TimeoutError

        before = signal.signal(signal.SIGALRM, expired)
        signal.setitimer(signal.ITIMER_REAL, max(wait_s, 0.001))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, before)
        return fd
    except TimeoutError:
        os.close(fd)
        raise ValueError(f"a launch of {project} still holds its lock here (it may still be creating "
                         "this job): not removed") from None
    except BaseException:
        os.close(fd)
        raise


def _poll_lock(fd: int, wait_s: float) -> None:
    import fcntl

    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise TimeoutError from None
            time.sleep(0.01)


def inventory(job: JobDir, limit: int = 20) -> dict:
    """What a job's folder holds worth pulling, when a pull found nothing: its result folders
    with file counts and sizes, and files the script wrote into its working directory."""
    folders = {}
    for name, path in (("outputs/", job.outputs), ("checkpoints/", job.checkpoints), ("backups/", job.backups)):
        sizes = [p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()] \
            if path.is_dir() else []
        folders[name] = {"files": len(sizes), "bytes": sum(sizes)}
    made = []
    started = job.spec.stat().st_mtime if job.spec.exists() else 0
    for p in job.code.rglob("*") if job.code.is_dir() else []:
        try:
            st = p.lstat()
        except OSError:
            continue
        # Written by the script: newer than the job, and not one of the snapshot's hard links.
        if p.is_file() and not p.is_symlink() and st.st_nlink == 1 and st.st_mtime > started:
            made.append({"path": "code/" + p.relative_to(job.code).as_posix(), "bytes": st.st_size})
    made.sort(key=lambda f: -f["bytes"])
    return {"folders": folders, "written_in_code": made[:limit], "more_in_code": max(0, len(made) - limit)}


def mark_results_safe(job: JobDir, how: str) -> dict:
    job.control.mkdir(parents=True, exist_ok=True)
    write_json_atomic(job.results_safe, {"how": how, "time": time.time()})
    return {"marked": True}


def request_stop(job: JobDir, reason: str) -> dict:
    """Asks the agent to stop the job; when no agent runs (LOST), stops what it left itself:
    the orphaned workload (only if its environment names this job), a secrets file, and the
    state, as STOPPED. Holding the agent's lock meanwhile, so no agent starts under us."""
    if not job.spec.exists():
        raise ValueError(f"no job at {job.path}")
    job.control.mkdir(parents=True, exist_ok=True)
    write_json_atomic(job.stop_request, {"reason": reason, "time": time.time()})
    lock = AgentLock(job)
    if not lock.acquire(wait_s=0):
        return {"requested": True, "agent_alive": True}
    try:
        book = StatusBook(job)
        pgid = book.doc.get("workload_pgid")
        killed = kill_stale_workload(job, pgid)
        remove_inside(job.secrets, job.path)
        previous = book.doc.get("state")
        if previous and JobState(previous).is_terminal:
            return {"requested": True, "agent_alive": False, "killed_workload": None, "state": previous}
        what = f"; its orphaned workload (pgid {pgid}) was killed" if killed else ""
        book.set(JobState.STOPPED, f"{reason} (the agent was not running{what})")
        if killed:
            book.event("killed-stale-workload", pgid=pgid, by="tether stop")
    finally:
        lock.release()
    return {"requested": True, "agent_alive": False, "killed_workload": pgid if killed else None,
            "state": JobState.STOPPED.value}


LOG_FILES = {"workload": "workload_log", "setup": "setup_log", "agent": "agent_log", "stacks": ""}


def logs(job: JobDir, which: str, tail: int, follow: bool, out: IO[bytes], framed: bool = False,
         start: Optional[str] = None) -> None:
    """The last `tail` lines, then (with follow) new output until the job ends (logread.py)."""
    from . import logread

    path: Path = job.newest_stacks() if which == "stacks" else getattr(job, LOG_FILES[which])
    position = logread.parse_position(start)
    if position is None and framed:
        past, position, at = logread.tail_at(path, tail)
        if past and position is not None:
            out.write(f"@{position[0]} {at} {len(past)}\n".encode())
            out.write(past)
            out.flush()
    elif position is None:
        out.write(logread.tail_bytes(path, tail))
        out.flush()
    if not follow:
        return

    logread.follow(path, out, lambda: job_ended(job), framed, position)


SERVE_IDLE_S = 900.0   # a channel asked nothing this long has lost its laptop (slept, offline)


def serve(root: Root, inp: IO[bytes], out: IO[bytes]) -> None:
    """A JSON-lines channel: one request per line, one answer per line, until EOF, or until
    nothing was asked for SERVE_IDLE_S (TETHER_SERVE_IDLE_S): a laptop that went away without
    closing the connection may leave it open for hours, and this would wait on it.

    Lets the launcher poll status over one SSH channel instead of one exec per poll (tether
    stop, the demo, the laptop's status keeper).
    """
    import threading

    idle_s = float(os.environ.get("TETHER_SERVE_IDLE_S") or SERVE_IDLE_S)
    last = [time.monotonic()]

    def end_when_idle() -> None:
        while True:
            time.sleep(min(idle_s / 4, 30.0))
            if time.monotonic() - last[0] > idle_s:
                os._exit(0)  # the main thread is blocked reading stdin: nothing of its own to finish

    threading.Thread(target=end_when_idle, name="serve-idle", daemon=True).start()
    for line in inp:
        last[0] = time.monotonic()
        try:
            req = json.loads(line)
            op = req.get("op")
            if op == "ping":
                result: object = {"pong": True, "time": time.time()}
            elif op == "status" and "dirs" in req:  # as `agent status DIR...` answers (the keeper's)
                rows = min(max(int(req.get("recent") or 0), 0), MAX_RECENT)
                result = [status(JobDir(str(d)), rows) for d in req["dirs"]]
            elif op == "status":
                result = [status(root.job(j)) for j in req["jobs"]]
            else:
                raise ValueError(f"unknown op {op!r}")
            answer = {"ok": True, "result": result}
        except Exception as exc:  # an answer, never a dead channel
            answer = {"ok": False, "error": str(exc)}
        out.write(json.dumps(answer).encode() + b"\n")
        out.flush()
        last[0] = time.monotonic()
