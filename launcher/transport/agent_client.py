"""Calls the shipped agent on a host: `python -m agent <verb>` with the runtime on PYTHONPATH.

One place builds those command lines; everything the launcher asks of a host goes through here.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from agent.protocol import NO_RUNTIME_EXIT, STATUS_RECENT_ENV, JobState, StatusAnswer, agent_argv

from launcher.errors import RemoteError, RuntimeGoneError
from launcher.transport import prestarted
from launcher.transport.host import Host, Stream


# What each verb does, in words, for messages (a user never needs the verb's own name).
VERB_WORDS = {
    "manifest": "reading the host's copy of the code", "receive": "receiving the code",
    "create-job": "creating the job", "start": "starting the agent", "spec": "reading the job's spec",
    "prepare-resume": "preparing the job to resume", "status": "reading the job's status",
    "stop": "asking the job to stop", "mark-safe": "marking the results safe", "logs": "reading the log",
    "list-files": "listing the files to pull", "read-files": "sending the files", "backups": "listing backups",
    "receive-backup": "receiving the backup", "hub-fetch": "fetching the backup from the Hub",
    "hub-upload": "uploading to the Hub", "launch": "launching the job",
    "discard-job": "removing the unfinished job", "serve": "opening the status channel",
    "inventory": "listing the job's folder",
}


@dataclass
class AgentClient:
    host: Host
    python: str
    runtime_dir: str

    def argv(self, verb: str, *args: str) -> List[str]:
        return agent_argv(self.python, self.runtime_dir, verb, *args)

    def argv_with(self, verb: str, args: Sequence[str], env: Optional[Mapping[str, str]] = None) -> List[str]:
        argv = self.argv(verb, *args)
        return ["env", *(f"{k}={v}" for k, v in env.items()), *argv] if env else argv

    def call(self, verb: str, *args: str, input: Optional[bytes] = None, timeout: float = 120,
             env: Optional[Mapping[str, str]] = None) -> Any:
        """env: settings for the agent, set by `env` before it (never secrets: those go on stdin)."""
        what = VERB_WORDS.get(verb, verb)
        argv = self.argv_with(verb, args, env)
        done = self.host.run(argv, input=input, timeout=timeout)
        if done.returncode == NO_RUNTIME_EXIT:
            raise RuntimeGoneError(f"{what}: no tether runtime at {self.runtime_dir} on the host (wiped or rebuilt?)")
        done.check(what)
        try:
            return done.json()
        except ValueError:
            raise RemoteError(f"{what}: the host answered something that is not JSON: {done.stdout[:200]!r}",
                              "is host.python the Python you meant? (tether launch --dry-run shows it)") from None

    def start(self, job_dir: str, secrets: Mapping[str, str]) -> dict:
        """`agent start` with the secrets on its stdin (never argv, never a file); {"started":
        bool, "why": the agent log's last line when it did not}."""
        done = self.host.run(self.argv("start", job_dir), input=json.dumps(dict(secrets)).encode(), timeout=120)
        try:
            answer = done.json()
        except ValueError:
            answer = {}
        if not isinstance(answer, dict) or done.returncode not in (0, 1):
            done.check(VERB_WORDS["start"])
        if answer.get("started"):
            return {"started": True}
        tail = str(answer.get("log_tail") or done.stderr.decode(errors="replace")).strip().splitlines()
        return {"started": False, "why": tail[-1][:300] if tail else "it exited at once"}

    def stream(self, verb: str, *args: str, early_next: bool = False) -> Stream:
        """early_next: the next same tether command starts this one before it loads (early.py):
        only for a session that waits for its stdin before it acts (harmless started for nothing)."""
        argv = self.argv(verb, *args)
        if early_next:
            self._remember(argv)
        return self.host.stream(argv)

    def _remember(self, argv: Sequence[str]) -> None:
        """The host's ssh command line for argv, started first by the next same command."""
        command_line = getattr(self.host, "command_line", None)   # OpenSshHost's; paramiko has none
        if command_line is not None and getattr(self.host, "same_lines_next_time", False):
            prestarted.remember(command_line(argv))

    def not_early(self, verb: str, *args: str) -> None:
        """stream(verb, *args, early_next=True) undone: it is of no use next time (the host's
        runtime does not know the verb)."""
        command_line = getattr(self.host, "command_line", None)
        if command_line is not None:
            prestarted.forget(command_line(self.argv(verb, *args)))

    def status(self, job_dirs: Sequence[str], recent: int = 0, timeout: float = 60) -> List[dict]:
        """recent: also each job's progress thinned to that many rows (agents that know how)."""
        return self.call("status", *job_dirs, timeout=timeout, env=self._recent_env(recent))

    def status_argv(self, job_dirs: Sequence[str], recent: int = 0) -> List[str]:
        """The command line of status() (started early by launcher.early)."""
        return self.argv_with("status", job_dirs, self._recent_env(recent))

    @staticmethod
    def _recent_env(recent: int) -> Optional[Dict[str, str]]:
        return {STATUS_RECENT_ENV: str(recent)} if recent else None

    def channel(self, root: str) -> "AgentChannel":
        return AgentChannel(self.stream("serve", root))


class AgentChannel:
    """The agent's JSON-lines server over one SSH channel: a status poll is one message."""

    def __init__(self, stream: Stream) -> None:
        self._s = stream

    def ask(self, op: str, **args: Any) -> Any:
        self._s.stdin.write(json.dumps({"op": op, **args}).encode() + b"\n")
        self._s.stdin.flush()
        line = self._s.stdout.readline()
        if not line:
            raise RemoteError(f"the status channel to the host closed: {self._s.stderr_text().strip()[-200:]}",
                              "check the connection and run the command again")
        answer = json.loads(line)
        if not answer.get("ok"):
            raise RemoteError(f"the host could not answer {op}: {str(answer.get('error'))[:300]}")
        return answer["result"]

    def status(self, job_id: str) -> StatusAnswer:
        answers = self.ask("status", jobs=[job_id])
        try:
            return StatusAnswer.from_json(answers[0] if isinstance(answers, list) and answers else None)
        except ValueError as exc:
            raise RemoteError(f"the host's status answer was not understood: {exc}") from None

    def wait_for_end(self, job_id: str, timeout: float, every_s: float = 0.5,
                     on_answer: Optional[Callable[[StatusAnswer], None]] = None) -> StatusAnswer:
        """Polls the job's status until it is terminal or LOST (or timeout); the last answer."""
        deadline = time.monotonic() + timeout
        answer = StatusAnswer()
        while time.monotonic() < deadline:
            answer = self.status(job_id)
            if on_answer is not None:
                on_answer(answer)
            if answer.state.is_terminal or answer.state == JobState.LOST:
                break
            time.sleep(every_s)
        return answer

    def close(self) -> None:
        self._s.close_stdin()
        self._s.wait()
