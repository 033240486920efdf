"""What the launcher asks of a host: one function per verb, each called as
`python -m agent <verb> ...` over SSH (or locally), or through `serve`'s JSON-lines channel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Optional

from .book import agent_alive
from .codetree import snapshot
from .files import read_json, write_bytes_atomic, write_json_atomic
from .paths import JobDir, Root, check_name
from .protocol import JobState


def create_job(root: Root, project: str, job_id: str, payload: dict) -> dict:
    """The job folder, its code snapshot, spec.json, and secrets.json (0600)."""
    job = root.job(job_id)
    if job.spec.exists():
        raise ValueError(f"job {job_id} already exists on this host")
    job.make_dirs()
    files = snapshot(root.code(project), job.code)
    # Secrets go first into a 0600 file: they never touch a command line or spec.json.
    write_bytes_atomic(job.secrets, json.dumps(payload.get("secrets") or {}).encode(), mode=0o600)
    if payload.get("teardown"):
        write_bytes_atomic(job.teardown, json.dumps(payload["teardown"]).encode(), mode=0o600)
    write_json_atomic(job.spec, {"spec": payload["spec"], "job": payload["job"]})
    key = payload["job"].get("setup_key")
    setup_done = bool(key) and root.setup_marker(key).exists()
    return {"job_dir": str(job.path), "files": files, "setup_done": setup_done}


def start(job: JobDir, wait_s: float = 15.0) -> dict:
    """Starts the agent detached (new session: it outlives this SSH command and the laptop)."""
    runtime = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(runtime))
    job.logs.mkdir(parents=True, exist_ok=True)
    with open(job.agent_log, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", str(job.path)],
            cwd=str(job.path), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True, close_fds=True,
        )
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if job.state.exists():
            return {"pid": proc.pid, "started": True}
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    tail = job.agent_log.read_bytes()[-2000:].decode(errors="replace") if job.agent_log.exists() else ""
    return {"pid": proc.pid, "started": False, "exit_code": proc.poll(), "log_tail": tail}


def _with_age(doc: Optional[dict], key: str, now: float) -> dict:
    """doc plus `<key>_age_s` by this host's clock (the laptop's may differ)."""
    doc = dict(doc or {})
    if doc.get(key):
        doc[key.replace("_at", "_age_s")] = round(now - doc[key], 1)
    return doc


def status(job: JobDir) -> dict:
    """The job's state as the host sees it, with LOST inferred from the agent's lock."""
    now = time.time()
    if not job.path.is_dir():
        return {"job_dir": str(job.path), "exists": False, "now": now}
    st = read_json(job.state) or {}
    hb = read_json(job.heartbeat) or {}
    alive = agent_alive(job)
    recorded = st.get("state")
    state = recorded or JobState.PENDING.value
    reason = st.get("reason")
    if not alive and not JobState(state).is_terminal:
        reason = f"agent is not running (last state {state}): host rebooted, preempted or agent killed"
        state = JobState.LOST.value
    hb_time = hb.get("time")
    return {
        "job_dir": str(job.path),
        "exists": True,
        "now": now,
        "state": state,
        "recorded_state": recorded,
        "reason": reason,
        "failure": st.get("failure"),
        "exit_code": st.get("exit_code"),
        "attempt": st.get("attempt", 0),
        "started_at": st.get("started_at"),
        "ended_at": st.get("ended_at"),
        "agent_alive": alive,
        "heartbeat_age_s": round(now - hb_time, 1) if hb_time else None,
        "step": hb.get("step"),
        "metrics": hb.get("metrics") or {},
        "last_progress_at": hb.get("last_progress_at"),
        "resources": hb.get("resources") or {},
        "workload_rss_mb": hb.get("workload_rss_mb"),
        "stage": st.get("stage"),
        "resumed_from": st.get("resumed_from"),
        "warnings": hb.get("warnings") or [],
        "backup": hb.get("backup") or {},
        "mirror": _with_age(hb.get("mirror"), "pushed_at", now),
        "deadline_at": hb.get("deadline_at"),
        "spend_usd": hb.get("spend_usd"),
        "awaiting_teardown": job.teardown.exists(),
    }


def prepare_resume(job: JobDir, secrets: dict) -> dict:
    """Before `start` on an existing job: it must not be running or finished well; its
    secrets (deleted when it ended) come again on stdin."""
    if not job.spec.exists():
        raise ValueError(f"no job at {job.path}")
    if agent_alive(job):
        raise ValueError("the job's agent is still running; stop it first or just watch it")
    state = (read_json(job.state) or {}).get("state")
    if state == JobState.SUCCEEDED.value:
        raise ValueError("the job already succeeded; launch it again for a new run")
    write_bytes_atomic(job.secrets, json.dumps(secrets).encode(), mode=0o600)
    try:
        job.stop_request.unlink()
    except FileNotFoundError:
        pass
    return {"previous_state": state}


def receive_backup(job: JobDir, name: str, stream: IO[bytes]) -> dict:
    """A backup brought from a mirror (the laptop or the Hub), unpacked beside the others; it
    is kept only if every file matches its manifest."""
    import shutil
    import tarfile

    from . import backup
    from .codetree import safe_relpath

    check_name("backup", name)
    tmp = job.backups / f".tmp-{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            rel = safe_relpath(member.name)
            if member.isdir():
                (tmp / rel).mkdir(parents=True, exist_ok=True)
                continue
            if not member.isfile():
                raise ValueError(f"refusing {rel!r} in a backup: only regular files")
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(member)
            with open(tmp / rel, "wb") as f:
                shutil.copyfileobj(src, f, 1 << 20)
    found = backup.load(tmp)
    problem = "no MANIFEST.json" if found is None else backup.verify_folder(tmp)
    if problem:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ValueError(f"backup {name} does not verify: {problem}")
    os.replace(tmp, job.backups / name)
    return {"backup": name, "step": found.step}


def mark_results_safe(job: JobDir, how: str) -> dict:
    job.control.mkdir(parents=True, exist_ok=True)
    write_json_atomic(job.results_safe, {"how": how, "time": time.time()})
    return {"marked": True}


def request_stop(job: JobDir, reason: str) -> dict:
    job.control.mkdir(parents=True, exist_ok=True)
    write_json_atomic(job.stop_request, {"reason": reason, "time": time.time()})
    return {"requested": True}


LOG_FILES = {"workload": "workload_log", "setup": "setup_log", "agent": "agent_log"}


def _tail_bytes(path: Path, lines: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max(lines, 1) * 400 - 65536))
            data = f.read()
    except FileNotFoundError:
        return b""
    parts = data.split(b"\n")
    if data.endswith(b"\n"):
        parts = parts[:-1]
    return b"".join(p + b"\n" for p in parts[-lines:]) if lines > 0 else b""


def logs(job: JobDir, which: str, tail: int, follow: bool, out: IO[bytes], poll_s: float = 0.25) -> None:
    """The last `tail` lines, then (with follow) new output until the job ends.

    Survives rotation: a new inode or a shrunk file is read again from its start.
    """
    path: Path = getattr(job, LOG_FILES[which])
    out.write(_tail_bytes(path, tail))
    out.flush()
    if not follow:
        return
    try:
        f: Optional[IO[bytes]] = open(path, "rb")
        f.seek(0, os.SEEK_END)
    except FileNotFoundError:
        f = None
    idle_after_end = 0
    while True:
        chunk = f.read(65536) if f else b""
        if chunk:
            out.write(chunk)
            out.flush()
            continue
        try:
            st = os.stat(path)
            if f is None or st.st_ino != os.fstat(f.fileno()).st_ino or st.st_size < f.tell():
                if f:
                    f.close()
                f = open(path, "rb")
                continue
        except FileNotFoundError:
            pass
        state = (read_json(job.state) or {}).get("state")
        ended = (state and JobState(state).is_terminal) or not agent_alive(job)
        if ended:
            idle_after_end += 1
            if idle_after_end > 2:  # a last read after the end, for lines written just before
                return
        time.sleep(poll_s)


def serve(root: Root, inp: IO[bytes], out: IO[bytes]) -> None:
    """A JSON-lines channel: one request per line, one answer per line, until EOF.

    Lets the launcher poll status over one SSH channel instead of one exec per poll.
    """
    for line in inp:
        try:
            req = json.loads(line)
            op = req.get("op")
            if op == "ping":
                result: object = {"pong": True, "time": time.time()}
            elif op == "status":
                result = [status(root.job(j)) for j in req["jobs"]]
            else:
                raise ValueError(f"unknown op {op!r}")
            answer = {"ok": True, "result": result}
        except Exception as exc:  # an answer, never a dead channel
            answer = {"ok": False, "error": str(exc)}
        out.write(json.dumps(answer).encode() + b"\n")
        out.flush()
