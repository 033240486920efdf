"""The laptop's side of `agent launch` (agent/launch_session.py): one SSH channel and one Python
start on the host for the whole of a launch: the project's lock, the code manifest, the job's
creation and its agent's start.

The host's Python and root, learnt by the bootstrap probe, are kept per host (HostFacts), so a
launch to a host tether already uses starts the session at once: the probe runs only when the
session cannot start (first launch, a runtime of another version, a wiped root)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from agent.protocol import JobPayload

from launcher.errors import RemoteError
from launcher.text import plain
from launcher.transport.agent_client import AgentClient
from launcher.transport.bootstrap import HostInfo, prepare_host, runtime_version
from launcher.transport.host import Host, Stream


class SessionUnavailable(Exception):
    """The host did not start the session (no runtime of this version there, most likely)."""


def _line(stream: Stream) -> Optional[dict]:
    raw = stream.stdout.readline()
    if not raw:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        raise RemoteError(f"the host's launch session answered something that is not JSON: {raw[:200]!r}") from None
    if not isinstance(doc, dict):
        raise RemoteError("the host's launch session answered something that is not a JSON object")
    return doc


def _hello(doc: Optional[dict]) -> Tuple[tuple, str, str]:
    """(python version, executable, root) from the session's first line, checked."""
    hello = doc.get("hello") if doc else None
    if not isinstance(hello, dict):
        raise SessionUnavailable()
    version, executable, root = hello.get("python"), hello.get("executable"), hello.get("root")
    if not (isinstance(version, list) and len(version) == 3 and all(isinstance(v, int) for v in version)
            and isinstance(executable, str) and isinstance(root, str) and root.startswith("/")):
        raise RemoteError("the host's launch session introduced itself in a shape tether does not know")
    return tuple(version), executable, root


class LaunchSession:
    def __init__(self, stream: Stream, info: HostInfo, manifest: Dict[str, Any]) -> None:
        self._stream = stream
        self._closed = False
        self.info = info
        self.manifest = manifest  # {"digest", "files"?}: checked by sync.resolve_manifest

    @classmethod
    def begin(cls, client: AgentClient, root: str, project: str) -> "Opening":
        """The host's side started; nothing is waited for until Opening.finish."""
        return Opening(client, client.stream("launch", root, project))

    @classmethod
    def open(cls, client: AgentClient, root: str, project: str, known: List[str], shipped: bool,
             on_wait: Callable[[], None]) -> "LaunchSession":
        return cls.begin(client, root, project).finish(known, shipped, on_wait)

    def _ask(self, request: dict, what: str) -> dict:
        self._stream.stdin.write(json.dumps(request).encode() + b"\n")
        self._stream.stdin.flush()
        doc = _line(self._stream)
        if doc is None or not doc.get("ok") or not isinstance(doc.get("result"), dict):
            raise RemoteError(f"{what} failed on the host: "
                              f"{_error(doc) or self._plain(stream.stderr_text().strip()[-300:]) or 'the session ended'}")
        return doc["result"]

    def create(self, job_id: str, payload: JobPayload, pushed: bool) -> dict:
        """{"job_dir", "setup_done"}; the project's lock is let go once the job has its snapshot."""
        created = self._ask({"op": "create", "job_id": job_id, "payload": payload.to_json(), "pushed": pushed},
                            "creating the job")
        if not isinstance(created.get("job_dir"), str) or not isinstance(created.get("setup_done"), bool):
            raise RemoteError("the host's answer to creating the job is not {job_dir, setup_done}")
        return created

    def start(self, secrets: Dict[str, str]) -> dict:
        """As AgentClient.start: {"started": True} or {"started": False, "why": a line}."""
        answer = self._ask({"op": "start", "secrets": dict(secrets)}, "starting the agent")
        if answer.get("started") is True:
            return {"started": True}
        tail = str(answer.get("log_tail") or "").strip().splitlines()
        return {"started": False, "why": tail[-1][:300] if tail else "it exited at once"}

    def close(self) -> None:
        """Ends the conversation (the host lets the lock go, if it still held it). Idempotent."""
        if not self._closed:
            self._closed = True
            _end(self._stream)


class Opening:
    """A launch session started on the host, not yet told what the laptop's tree is."""

    def __init__(self, client: AgentClient, stream: Stream) -> None:
        self.client, self._stream = client, stream

    def finish(self, known: List[str], shipped: bool, on_wait: Callable[[], None]) -> LaunchSession:
        """Introduced and holding the project's lock, or SessionUnavailable."""
        stream = self._stream
        try:
            version, executable, real_root = _hello(_line(stream))
            stream.stdin.write(json.dumps({"op": "known", "digests": list(known)}).encode() + b"\n")
            stream.stdin.flush()
            doc = _line(stream)
            if doc is not None and doc.get("waiting"):
                on_wait()
                doc = _line(stream)
            if doc is None or not doc.get("locked"):
                raise RemoteError(f"the host's launch session ended before it held the project's lock: "
                                  f"{_error(doc) or plain(stream.stderr_text().strip()[-300:]) or 'no answer'}")
            manifest = doc.get("manifest")
            if not isinstance(manifest, dict):
                raise RemoteError("the host's launch session sent no manifest")
        except BaseException:
            _end(stream)
            raise
        info = HostInfo(python=self.client.python, executable=executable, version=version, root=real_root,
                        runtime_dir=self.client.runtime_dir, shipped=shipped)
        return LaunchSession(stream, info, manifest)

    def close(self) -> None:
        _end(self._stream)


def _error(doc: Optional[dict]) -> str:
    """The host's error line, made inert (it is the host's text)."""
    return plain(doc.get("error"), 300) if doc and doc.get("error") else ""


def _end(stream: Stream) -> None:
    try:
        stream.close_stdin()
    except OSError:
        pass
    stream.wait()


# -- what tether learnt of a host's Python and root, kept between launches ------------------

def _facts_path(cache_dir: Path, host_key: str, python: str, root: str) -> Path:
    key = hashlib.sha256(f"{host_key}\0{python}\0{root}".encode()).hexdigest()[:24]
    return cache_dir / "host-facts" / f"{key}.json"


def _known_runtime(path: Path) -> Optional[Tuple[str, str]]:
    """(absolute root, runtime folder) kept for this host, if of this tether's runtime version."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    root, runtime_dir = (doc.get("root"), doc.get("runtime_dir")) if isinstance(doc, dict) else (None, None)
    if isinstance(root, str) and isinstance(runtime_dir, str) and runtime_dir == f"{root}/runtime/{runtime_version()}":
        return root, runtime_dir
    return None


class PendingLaunch:
    """A launch on a host: its session started at once where tether knows the host (its
    Python, root and runtime kept from an earlier launch), finished once the laptop has
    scanned its workdir; else the probe (and the runtime's shipping) first."""

    def __init__(self, host: Host, host_key: str, python: str, root: str, project: str,
                 cache_dir: Optional[Path]) -> None:
        self.host, self.python, self.root, self.project = host, python, root, project
        self.path = _facts_path(cache_dir, host_key, python, root) if cache_dir is not None else None
        kept = _known_runtime(self.path) if self.path is not None else None
        self.opening = LaunchSession.begin(AgentClient(host, python, kept[1]), kept[0], project) if kept else None

    def finish(self, known: List[str], on_wait: Callable[[], None]) -> LaunchSession:
        if self.opening is not None:
            try:
                return self.opening.finish(known, False, on_wait)
            except SessionUnavailable:
                pass  # gone or replaced on the host: probe it as if new
        info = prepare_host(self.host, self.python, self.root)
        try:
            session = LaunchSession.open(AgentClient(self.host, info.python, info.runtime_dir), info.root,
                                         self.project, known, info.shipped, on_wait)
        except SessionUnavailable:
            raise RemoteError(f"the agent runtime on {self.host.name} did not start",
                              f"its folder {info.runtime_dir} may be damaged: remove it and launch again") from None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"root": info.root, "runtime_dir": info.runtime_dir}))
            os.replace(tmp, self.path)
        return session

    def cancel(self) -> None:
        """The launch stopped before finish (its scan failed): the host's side ends."""
        if self.opening is not None:
            self.opening.close()


def open_launch(host: Host, host_key: str, python: str, root: str, project: str, known: List[str],
                cache_dir: Optional[Path], on_wait: Callable[[], None]) -> LaunchSession:
    """The session on a host tether knows, else after the probe (and the runtime's shipping)."""
    return PendingLaunch(host, host_key, python, root, project, cache_dir).finish(known, on_wait)
