"""A host's agent that answers a pull's listings with what it likes (a hostile or broken host),
over the session `agent pull-files` keeps (agent/pull_files.py): each request a JSON line on
its stdin, each listing a JSON line on its stdout."""

from __future__ import annotations

import io
import json
from typing import Any, List


class ListingSession:
    """The pull-files session's pipes: every {"list": ...} is answered with `listing`."""

    def __init__(self, listing: Any) -> None:
        self.listing = listing
        self.requests: List[dict] = []
        self.stdin = self
        self.stdout = io.BytesIO()

    def write(self, data: bytes) -> int:
        request = json.loads(data)
        self.requests.append(request)
        if "list" in request:
            at = self.stdout.tell()
            self.stdout.seek(0, io.SEEK_END)
            self.stdout.write(json.dumps(self.listing).encode() + b"\n")
            self.stdout.seek(at)
        return len(data)

    def flush(self) -> None:
        pass

    def close_stdin(self) -> None:
        pass

    def wait(self) -> int:
        return 0

    def kill(self) -> None:
        pass

    def stderr_text(self) -> str:
        return ""


class ListingClient:
    """An AgentClient whose host lists `files` (and answers other calls with `answers[verb]`)."""

    def __init__(self, files: list, **answers: Any) -> None:
        self.files = files
        self.answers = answers
        self.sessions: List[ListingSession] = []

    def stream(self, verb: str, *args: str, **kw: Any) -> ListingSession:
        assert verb == "pull-files", verb
        self.sessions.append(ListingSession({"files": self.files}))
        return self.sessions[-1]

    def call(self, verb: str, *args: str, **kw: Any) -> Any:
        return self.answers[verb.replace("-", "_")]
