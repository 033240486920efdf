"""The laptop's side of `agent launch` (agent/launch_session.py): one SSH channel and one Python
start on the host for the whole of a launch: the project's lock, the code manifest, the job's
creation and its agent's start.

The host's Python and root, learnt by the bootstrap probe, are kept per host, so a launch to
a host tether already uses starts the session at once: the probe runs only when the session
cannot start (first launch, a runtime of another version, a wiped root). Every answer has a
deadline (the wait for another launch's lock excepted, which is said while it lasts)."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import zlib
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from agent.protocol import JobPayload

from launcher.errors import RemoteError
from launcher.text import plain
from launcher.transport.agent_client import AgentClient
from launcher.transport.bootstrap import HostInfo, prepare_host, runtime_version
from launcher.transport.host import Host, KilledAfter, Stream

HELLO_S = 60.0      # the host's Python start (as the probe's limit)
ANSWER_S = 120.0    # a manifest, a job's creation, an agent's start (as each verb's limit)
MAX_LINE = 1 << 30  # one answer line (a manifest of a million files fits)
WRITE_CHUNK = 1 << 16  # a request is written in these, each within the answer's limit


class SessionUnavailable(Exception):
    """The host did not start the session (no runtime of this version there, most likely)."""


class _Conversation:
    """JSON lines to and from the host's session, each answer within a deadline: past it the
    channel is killed, and the read ends."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.ended = self.expired = False

    def say(self, doc: dict, timeout: Optional[float] = None) -> None:
        """A host side that is gone is not an error here: its last words (or the end) are what
        the next hear() gets. timeout: a host side that takes no byte of the line for that long
        (a put is megabytes: the pipe fills) has its channel killed, as one that does not answer."""
        line = json.dumps(doc).encode() + b"\n"
        try:
            for at in range(0, len(line), WRITE_CHUNK):
                self._within(timeout, lambda: self.stream.stdin.write(line[at:at + WRITE_CHUNK]))
            self._within(timeout, self.stream.stdin.flush)
        except OSError:
            pass

    def _within(self, timeout: Optional[float], fn: Callable[[], Any]) -> Any:
        watch = KilledAfter(timeout, self.stream)
        try:
            with watch:
                return fn()
        finally:
            self.expired = self.expired or watch.expired

    def hear(self, timeout: Optional[float], what: str) -> Optional[dict]:
        raw = self._within(timeout, lambda: self.stream.stdout.readline(MAX_LINE))
        if not raw:
            return None
        try:
            doc = json.loads(raw)
        except ValueError:
            raise RemoteError(f"{what}: the host answered something that is not JSON: {plain(raw[:200])}") from None
        if not isinstance(doc, dict):
            raise RemoteError(f"{what}: the host answered something that is not a JSON object")
        return doc

    def why_ended(self, doc: Optional[dict], timeout: Optional[float]) -> str:
        """The host's error line, or that it did not answer in time, or its stderr's last words."""
        if doc and doc.get("error"):
            return plain(doc.get("error"), 300)
        self.end(kill=True)  # then its stderr is all read
        if self.expired:
            return f"no answer within {timeout:.0f}s"
        return plain(self.stream.stderr_text().strip()[-300:]) or "the session ended"

    def end(self, kill: bool = False, wait: bool = True) -> None:
        """kill: the host's side may be blocked (waiting for a lock, or stuck) and not reading.
        wait=False: the conversation is over and its last words are not needed; the channel's
        close is reaped on a thread of its own (a launch does not wait for the host's exit)."""
        if self.ended:
            return
        self.ended = True
        if kill:
            self.stream.kill()
        else:
            try:
                self.stream.close_stdin()
            except OSError:
                pass
        if wait:
            self.stream.wait()
        else:
            threading.Thread(target=self.stream.wait, daemon=True).start()


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
    """A session holding the project's lock: the job's creation, then its start."""

    def __init__(self, talk: _Conversation, info: HostInfo, manifest: Dict[str, Any]) -> None:
        self._talk = talk
        self.info = info
        self.manifest = manifest  # {"digest", "files"?}: checked by sync.HostManifest.files
        self._answered_all = False  # start answered: nothing more to hear from the host

    def _ask(self, request: dict, what: str) -> dict:
        self._talk.say(request, ANSWER_S)
        doc = self._talk.hear(ANSWER_S, what)
        if doc is None or not doc.get("ok") or not isinstance(doc.get("result"), dict):
            raise RemoteError(f"{what} failed on the host: {self._talk.why_ended(doc, ANSWER_S)}")
        return doc["result"]

    def put(self, delta: bytes) -> dict:
        """A small change (sync.write_delta's bytes) on this channel: {"received", "deleted"}."""
        encoded = base64.b64encode(zlib.compress(delta)).decode()
        return self._ask({"op": "put", "delta": encoded}, "sending the change")

    def create(self, job_id: str, payload: JobPayload, pushed: bool, check_after: bool = False) -> dict:
        """{"job_dir", "setup_done"}; the project's lock is let go once the job has its snapshot.
        pushed: code went around this session (rsync, the tar stream), so the host hashes it
        before linking it: after this answer with check_after (a mismatch is then the job's
        code error, which fails it before its workload starts), else before it (a mismatch
        fails the create: a multi-node launch takes every node back at once)."""
        created = self._ask({"op": "create", "job_id": job_id, "payload": payload.to_json(), "pushed": pushed,
                             "check_after_answer": pushed and check_after}, "creating the job")
        if not isinstance(created.get("job_dir"), str) or not isinstance(created.get("setup_done"), bool):
            raise RemoteError("the host's answer to creating the job is not {job_dir, setup_done}")
        return created

    def start(self, secrets: Dict[str, str]) -> dict:
        """As AgentClient.start: {"started": True} or {"started": False, "why": a line}."""
        answer = self._ask({"op": "start", "secrets": dict(secrets)}, "starting the agent")
        self._answered_all = True
        if answer.get("started") is True:
            return {"started": True}
        tail = str(answer.get("log_tail") or "").strip().splitlines()
        return {"started": False, "why": plain(tail[-1], 300) if tail else "it exited at once"}

    def close(self) -> None:
        """Ends the conversation (the host lets the lock go, if it still held it). Idempotent."""
        self._talk.end(wait=not self._answered_all)

    def abandon(self) -> None:
        """The launch failed: the channel killed at once (the host's side may be busy, not
        reading). A host side that was waiting for the next request lets the lock go now; one
        still creating the job holds it until done, which a discard-job waits for."""
        self._talk.end(kill=True)


class Opening:
    """A launch session started on the host: introduced, then told the laptop's digests."""

    def __init__(self, client: AgentClient, root: str, project: str, shipped: bool) -> None:
        self.client, self.shipped = client, shipped
        stream = client.stream("launch", root, project, early_next=True)  # it waits for the laptop's digests
        self._talk = _Conversation(stream)
        self.info: Optional[HostInfo] = None
        self.told = False  # the digests are on their way (tell): the host may hold the lock

    def introduce(self) -> HostInfo:
        """The host's Python and root (its first line), or SessionUnavailable."""
        if self.info is None:
            try:
                version, executable, root = _hello(self._talk.hear(HELLO_S, "starting the launch on the host"))
            except BaseException:
                self._talk.end(kill=True)
                raise
            self.info = HostInfo(python=self.client.python, executable=executable, version=version, root=root,
                                 runtime_dir=self.client.runtime_dir, shipped=self.shipped)
        return self.info

    def tell(self, known: List[str]) -> None:
        """The digests, sent before the host's hello is read: it locks and hashes its copy
        while the laptop goes on (scans its workdir)."""
        self._talk.say({"op": "known", "digests": list(known)})
        self.told = True

    def finish(self, known: List[str], on_wait: Callable[[], None]) -> LaunchSession:
        """Told the digests the laptop knows (unless tell did), holding the project's lock,
        with the manifest."""
        info = self.introduce()
        talk = self._talk
        try:
            if not self.told:
                self.tell(known)
            doc = talk.hear(ANSWER_S, "reading the host's copy of the code")
            if doc is not None and doc.get("waiting"):
                on_wait()
                doc = talk.hear(None, "waiting for the project's lock")  # said, and as long as it takes
            if doc is None or not doc.get("locked"):
                raise RemoteError(f"the host's launch session ended before it held the project's lock: "
                                  f"{talk.why_ended(doc, ANSWER_S)}")
            manifest = doc.get("manifest")
            if not isinstance(manifest, dict):
                raise RemoteError("the host's launch session sent no manifest")
        except BaseException:
            talk.end(kill=True)
            raise
        return LaunchSession(talk, info, manifest)

    def close(self) -> None:
        """Before the lock is held the host may be blocked on it, not reading: killed."""
        self._talk.end(kill=True)


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


class _Probe:
    """prepare_host on a thread of its own, started at once: a first launch's probe and
    runtime shipping go on while the laptop scans its workdir."""

    def __init__(self, host: Host, python: str, root: str) -> None:
        self._info: Optional[HostInfo] = None
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, args=(host, python, root), name="probe", daemon=True)
        self._thread.start()

    def _run(self, host: Host, python: str, root: str) -> None:
        try:
            self._info = prepare_host(host, python, root)
        except BaseException as exc:  # handed to the launch, which says it
            self._error = exc

    def result(self) -> HostInfo:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._info is not None
        return self._info


class PendingLaunch:
    """A launch on a host: its session started at once where tether knows the host (its
    Python, root and runtime kept from an earlier launch); else the probe (which ships the
    runtime) starts at once, and the session once it is done; where a kept session fails,
    after a probe then."""

    def __init__(self, host: Host, host_key: str, python: str, root: str, project: str,
                 cache_dir: Optional[Path]) -> None:
        self.host, self.python, self.root, self.project = host, python, root, project
        self.path = _facts_path(cache_dir, host_key, python, root) if cache_dir is not None else None
        kept = _known_runtime(self.path) if self.path is not None else None
        self.opening: Optional[Opening] = None
        self._probe: Optional[_Probe] = None
        if kept is not None:
            self.opening = Opening(AgentClient(host, python, kept[1]), kept[0], project, shipped=False)
        else:
            self._probe = _Probe(host, python, root)

    def introduce(self) -> HostInfo:
        if self.opening is not None:
            try:
                return self.opening.introduce()
            except SessionUnavailable:
                pass  # gone or replaced on the host: probe it as if new
        probe, self._probe = self._probe or _Probe(self.host, self.python, self.root), None
        info = probe.result()
        self.opening = Opening(AgentClient(self.host, info.python, info.runtime_dir), info.root, self.project,
                               info.shipped)
        try:
            introduced = self.opening.introduce()
        except SessionUnavailable:
            raise RemoteError(f"the agent runtime on {self.host.name} did not start",
                              f"its folder {info.runtime_dir} may be damaged: remove it and launch again") from None
        self._remember(introduced)
        return introduced

    def tell(self, known: List[str]) -> None:
        """Where the session is already started: its digests now (see Opening.tell)."""
        if self.opening is not None:
            self.opening.tell(known)

    def finish(self, known: List[str], on_wait: Callable[[], None]) -> LaunchSession:
        self.introduce()
        assert self.opening is not None
        return self.opening.finish(known, on_wait)

    def cancel(self) -> None:
        """The launch stopped before finish (its scan failed, another node's did): ended. A
        probe under way is not waited for (it may be shipping the runtime): its thread ends
        with tether, its ssh with the Ctrl-C or on its own, an install cut short left as a
        hidden temp folder the next probe does not count."""
        if self.opening is not None:
            self.opening.close()

    def _remember(self, info: HostInfo) -> None:
        """Whole or not at all, as the laptop's other caches (one that cannot be written only
        costs the next launch its shortcut)."""
        if self.path is not None:
            from launcher.cache_files import write_whole

            write_whole(self.path, json.dumps({"root": info.root, "runtime_dir": info.runtime_dir}).encode())
