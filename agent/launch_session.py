"""`agent launch ROOT PROJECT`: the host's side of a whole launch in one process, over one SSH
channel. A launch used to start Python on the host once per step (lock, manifest, create-job,
start); each start costs its interpreter and imports, more than the step's own work.

The conversation, one JSON object per line:
  agent:    {"hello": {"python": [3, 11, 7], "executable": ..., "root": ...}}
  launcher: {"op": "known", "digests": [...]}    manifests it has (sent once its scan is done)
  agent:    {"waiting": true}                    only if another launch holds the project's lock
                                                 (taken once the digests are in)
  agent:    {"locked": true, "manifest": {"digest": ..., "files"?: ...}}
  launcher: {"op": "put", "delta": base64}         0 or more: a small change, sent on this channel
                                                 (zlib of a JSON line and a tar, as `agent receive`
                                                 reads them)
  agent:    {"ok": true, "result": {"received": n, "deleted": n}}
  launcher: {"op": "create", "job_id": ..., "payload": {...}, "pushed": bool}
  agent:    {"ok": true, "result": {"job_dir": ..., "files": n, "setup_done": bool}}
  launcher: {"op": "start", "secrets": {...}}     secrets on the channel: never argv, never a file
  agent:    {"ok": true, "result": {"started": bool, ...}}
An error is {"ok": false, "error": "one line"} and the end of the conversation. The lock is
held from the manifest to the job's snapshot; the launcher sends changed files meanwhile on
channels of its own (rsync, or `agent receive`: "pushed"), or a small change on this one
("put", whose files the session hashes itself); the job's snapshot is made after the create
answer, on a thread that lets the lock go when it is made (code_snapshot.py). The launcher starts this before it scans its
workdir, so the host's Python start overlaps the scan. The end of stdin ends the
conversation at any point: a launcher that dies leaves no lock behind.
"""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import sys
import tarfile
import zlib
from pathlib import Path
from typing import IO, Dict, Optional

from . import code_snapshot, codetree, hostops
from .paths import JobDir, Root
from .protocol import code_digest, sha256_file


PUT_MAX_BYTES = 64 * 1024 * 1024   # a put unpacks to at most this (the laptop sends up to 4 MiB of files)


def _say(out: IO[bytes], doc: dict) -> None:
    out.write(json.dumps(doc).encode() + b"\n")
    out.flush()


def _request(inp: IO[bytes], *ops: str) -> Optional[dict]:
    """The launcher's next request, which must be one of ops; None at the end of stdin."""
    line = inp.readline()
    if not line.strip():
        return None
    doc = json.loads(line)
    if not isinstance(doc, dict) or doc.get("op") not in ops:
        raise ValueError(f"expected the launcher's {' or '.join(map(repr, ops))} request")
    return doc


def _take_lock(root: Root, project: str, out: IO[bytes]) -> int:
    path = root.code_lock(project)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        _say(out, {"waiting": True})
        fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def serve_launch(root: Root, project: str, inp: IO[bytes], out: IO[bytes]) -> int:
    _say(out, {"hello": {"python": list(sys.version_info[:3]), "executable": sys.executable,
                         "root": str(root.path)}})
    fd: Optional[int] = None
    maker: Optional[code_snapshot.SnapshotMaker] = None
    try:
        told = _request(inp, "known")
        if told is None:
            return 0
        known = told.get("digests")
        if not isinstance(known, list) or not all(isinstance(d, str) for d in known):
            raise ValueError("the launcher's known digests are not a list of strings")
        # Only now: a multi-node launch introduces every node before it locks any, and a
        # launcher that stops before this (its scan failed) never held the lock.
        fd = _take_lock(root, project, out)
        files = _manifest(root, project)
        _say(out, {"locked": True, "manifest": codetree.manifest_answer(files, known)})
        while True:
            request = _request(inp, "put", "create")
            if request is None:
                return 0
            if request["op"] == "create":
                break
            _say(out, {"ok": True, "result": _put(root.code(project), files, request)})
        created = _create(root, project, request, code_digest(files))
        # The snapshot is made on a thread, which lets the lock go when it is (code_snapshot.py);
        # code sent around this session is hashed there first, not before the answer.
        check = code_snapshot.DigestCheck(created.pop("check_digest"), root.code_manifest_cache(project)) \
            if "check_digest" in created else None
        maker, fd = code_snapshot.SnapshotMaker(root.code(project), JobDir(created["job_dir"]), fd, check), None
        _say(out, {"ok": True, "result": created})
        start = _request(inp, "start")
        if start is None:
            return 0
        secrets = start.get("secrets") or {}
        if not isinstance(secrets, dict):
            raise ValueError("the start request's secrets are not an object")
        _say(out, {"ok": True, "result": hostops.start(JobDir(created["job_dir"]), secrets)})
        return 0
    except (ValueError, OSError, KeyError) as exc:
        _say(out, {"ok": False, "error": str(exc).splitlines()[0][:500] if str(exc) else type(exc).__name__})
        return 2
    finally:
        if fd is not None:
            os.close(fd)
        if maker is not None:
            maker.join()  # the process, and so its locks, last until the snapshot is made


def _manifest(root: Root, project: str) -> Dict[str, dict]:
    """The project's code manifest, after removing what killed launches left (no sync writes
    while the lock is held): one scan for both."""
    code = root.code(project)
    entries = codetree.without_temp_files(code, codetree.scan_files(code))
    root.clean_rsync_temp(project)
    return codetree.manifest(code, root.code_manifest_cache(project), entries)


def _put(code: Path, files: Dict[str, dict], request: dict) -> dict:
    """A small change applied as `agent receive` applies one; files (the manifest) follows
    it, each written file hashed here, so the job's digest needs no second scan."""
    delta = request.get("delta")
    if not isinstance(delta, str):
        raise ValueError("the put request has no delta")
    unzip = zlib.decompressobj()
    try:
        raw = unzip.decompress(base64.b64decode(delta, validate=True), PUT_MAX_BYTES)
    except zlib.error as exc:
        raise ValueError(f"the put's change is not zlib data ({exc})") from None
    if len(raw) >= PUT_MAX_BYTES:
        raise ValueError("a put is for a small change: this one is too big")
    if not unzip.eof:  # a stream cut short is not applied in part
        raise ValueError("the put's change is cut short")
    try:
        applied = codetree.apply_delta(code, io.BytesIO(raw))
    except tarfile.TarError as exc:
        raise ValueError(f"the put's change is not a whole tar ({exc})") from None
    for rel in applied["deleted_names"]:
        files.pop(rel, None)
    for rel in applied["received_names"]:
        st = os.stat(code / rel)
        files[rel] = {"size": st.st_size, "mode": st.st_mode & 0o777, "sha256": sha256_file(code / rel)}
    return {"received": applied["received"], "deleted": applied["deleted"]}


def _create(root: Root, project: str, request: dict, digest: str) -> dict:
    payload = request.get("payload")
    if not isinstance(payload, dict):
        raise ValueError("the create request has no payload")
    # Nothing sent since the manifest but on this channel, under this same lock: the
    # manifest kept with the puts is the code's.
    pushed = request.get("pushed") is True
    return hostops.create_job(root, project, str(request.get("job_id")), payload,
                              code_digest_now=None if pushed else digest, snapshot_now=False,
                              check_later=pushed and request.get("check_after_answer") is True)
