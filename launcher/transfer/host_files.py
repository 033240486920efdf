"""The host's side of one pull, as the laptop talks to it: `agent pull-files`, a session of
JSON lines (agent/pull_files.py), or on an older runtime its `list-files` and `read-files`;
each held to a time limit, as a command is (pull.py checks what it says)."""

from __future__ import annotations

import json
import threading
import time
from typing import IO, Callable, List, Optional, Tuple

from agent.protocol import SIZES_ONLY_ENV

from launcher.errors import RemoteError
from launcher.text import plain
from launcher.transport.agent_client import VERB_WORDS, AgentClient
from launcher.transport.host import KilledAfter, Stream

MAX_LISTING = 64 << 20    # a listing line from the host, at most (a million files' names)

LISTING_S = 600.0   # a listing's answer, at most (the old `list-files` call's limit: hashing is slow)
ENDING_S = 30.0     # a host command's exit once its work is done, at most


class HostFiles:
    """The host's side of one pull: `agent pull-files JOB`, one command that answers the
    listings and then sends the files (agent/pull_files.py). Started first by the next same
    pull (early.py): it waits for its requests. On a runtime from before it (a job launched by
    an older tether) the pull runs that runtime's `list-files` and `read-files` instead."""

    def __init__(self, client: AgentClient, job_dir: str) -> None:
        self.client, self.job_dir = client, job_dir
        self.session: Optional[Stream] = client.stream("pull-files", job_dir, early_next=True)
        self.frames: Optional[Stream] = None   # read-files's, on an older runtime
        self._reading: Optional[Stream] = None

    def listing(self, paths: List[str], hashes: bool) -> object:
        retried = False
        while self.session is not None:
            session = self.session
            self._send({"list": paths, "hashes": hashes})
            with KilledAfter(LISTING_S, session) as watch:
                line = session.stdout.readline(MAX_LISTING)
            if line.endswith(b"\n"):
                return json_line(line, "the host's list of files to pull")
            if len(line) >= MAX_LISTING:
                raise RemoteError(f"the host's list of files to pull is longer than {MAX_LISTING >> 20} MiB",
                                  "pull a folder inside it (--path)")
            code, why = self._ended(session)
            if watch.expired:
                raise RemoteError(f"{VERB_WORDS['list-files']}: no answer from the host within {LISTING_S:.0f}s",
                                  "check the host (tether status), then run pull again")
            if code == 2 and "invalid choice: 'pull-files'" in why:
                self.client.not_early("pull-files", self.job_dir)  # the next pull of this job starts nothing for it
                self.session = None
                break
            if code in (255, -1) and not retried:
                # The connection failed, not the host's side: said as every command says it
                # (a changed host key, a refused login, a host that is down, retried as they are).
                self.client.host.run(["true"], timeout=120)
                self.session, retried = self.client.stream("pull-files", self.job_dir), True
                continue
            tail = " | ".join(plain(why).strip().splitlines()[-3:]) or f"exit code {code}"
            raise RemoteError(f"{VERB_WORDS['list-files']} failed on the host: {tail}")
        return self.client.call("list-files", self.job_dir, *paths, timeout=LISTING_S,
                                env=None if hashes else {SIZES_ONLY_ENV: "1"})

    def read(self, requests: List[dict]) -> IO[bytes]:
        """Where the frames of the files asked for come, in their order."""
        if self.session is not None:
            self._send({"read": requests})
            self._reading = self.session
            self.session.close_stdin()
            return self.session.stdout
        self.frames = self._reading = self.client.stream("read-files", self.job_dir)
        self.frames.stdin.write(json.dumps(requests).encode())
        self.frames.close_stdin()
        return self.frames.stdout

    def kill(self) -> None:
        for s in (self.session, self.frames):
            if s is not None:
                s.kill()

    def close(self) -> None:
        """Each command ended as a finished one does (a session not asked to read ends at the
        end of its stdin; read() closed the stdin of the one it asked), or killed when it does
        not end within ENDING_S, or when the wait is interrupted (Ctrl-C)."""
        for s in (self.session, self.frames):
            if s is not None:
                if s is not self._reading:
                    try:
                        s.close_stdin()
                    except OSError:
                        pass
                self._ended(s)

    def _ended(self, stream: Stream) -> Tuple[Optional[int], str]:
        """Its exit status (None: killed, as it had not ended within ENDING_S) and stderr."""
        try:
            with KilledAfter(ENDING_S, stream) as watch:
                code = stream.wait()
        except BaseException:
            stream.kill()
            raise
        return (None if watch.expired else code), stream.stderr_text()

    def _send(self, request: dict) -> None:
        assert self.session is not None
        try:
            self.session.stdin.write(json.dumps(request).encode() + b"\n")
            self.session.stdin.flush()
        except OSError:  # it ended (a pipe's EPIPE, paramiko's closed channel): its stdout and stderr say how
            pass


class StallWatch:
    """Ends the pull (kill) when no byte of the files came for seconds: a connection that is
    alive (ssh's keepalives answered) but a host side that sends nothing would otherwise be
    waited for forever, by `tether pull` and by the status read that pulls before a host goes."""

    def __init__(self, seconds: float, kill: Callable[[], None]) -> None:
        self.seconds, self.kill = seconds, kill
        self.last = time.monotonic()
        self.fired = False
        self._stop = threading.Event()
        threading.Thread(target=self._watch, name="pull-stall", daemon=True).start()

    def fed(self, progress: Callable[[int], None]) -> Callable[[int], None]:
        """progress, which also notes that bytes came (the read loop calls it once a block)."""
        def fed(n: int) -> None:
            self.last = time.monotonic()
            progress(n)
        return fed

    def _watch(self) -> None:
        while not self._stop.wait(min(self.seconds / 4, 5.0)):
            if time.monotonic() - self.last > self.seconds:
                self.fired = True
                self.kill()
                return

    def stop(self) -> None:
        self._stop.set()


def json_line(line: bytes, what: str) -> object:
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        raise RemoteError(f"{what} is not JSON: {plain(line[:200])}") from None
