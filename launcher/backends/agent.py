"""A job run by tether's agent on a host reached over SSH (or on this machine): every verb is
a call to `python -m agent <verb>` there, through one connection."""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Dict, Iterator, List, Optional, Sequence


from agent.protocol import BackupInfo, JobState, StatusAnswer

from launcher.backends.base import Context, StopAsked
from launcher.errors import RemoteError, RuntimeGoneError, SpecError, TetherError, UnreachableError, UsageError
from launcher.jobs.view import JobView, last_known, runs_there, spend_of
from launcher.registry import JobRecord
from launcher.text import inert, plain
from launcher.transport.agent_client import AgentClient
from launcher.transport.host import Host
from launcher.transport.connect import STATUS_RETRY_S, agent_for, host_for_record

if TYPE_CHECKING:  # imported where used: a status read needs neither
    from rich.console import Console

    from launcher.transfer.pull import PullResult


class AgentJob:
    reaches_host = True

    def __init__(self, record: JobRecord, ctx: Context) -> None:
        self.record, self.ctx = record, ctx

    def label(self) -> str:
        return self.label_of(self.record)

    @staticmethod
    def label_of(rec: JobRecord) -> str:
        ep = rec.endpoint
        if ep.get("kind") == "local":
            return "local"
        user = f"{ep['user']}@" if ep.get("user") else ""
        return f"{user}{ep['host']}:{ep['port']}"

    @contextmanager
    def client(self) -> Iterator[AgentClient]:
        with agent_for(self.record, self.ctx.places) as client:
            yield client

    # -- status ----------------------------------------------------------------------------

    @classmethod
    def observe_all(cls, handles: List["AgentJob"], recent: int = 0) -> Dict[str, JobView]:
        """One status command per host for all its jobs, every host at once: a dead one costs
        its connect timeout, once, beside the others. recent: each job's progress too, thinned
        to that many rows, in the same command."""
        by_host: Dict[str, List[AgentJob]] = {}
        for h in handles:
            by_host.setdefault(json.dumps(h.record.endpoint, sort_keys=True), []).append(h)
        groups = list(by_host.values())
        if len(groups) == 1:
            return _observe_group(groups[0], recent)
        from concurrent.futures import ThreadPoolExecutor  # one host (the usual status) needs no pool

        views: Dict[str, JobView] = {}
        with ThreadPoolExecutor(max_workers=min(16, len(groups))) as pool:
            for got in pool.map(lambda g: _observe_group(g, recent), groups):
                views.update(got)
        return views

    # -- logs, files, backups ----------------------------------------------------------------

    def logs(self, tail: int, follow: bool, which: str, out: BinaryIO) -> None:
        """The host's log, each chunk written (and flushed) the moment it arrives, piped or not.
        Following, a dropped connection is reconnected with backoff and the log resumed right
        after the last chunk received (framed: logread.py), never taken for the job's end."""
        rec = self.record
        args = [rec.job_dir, "--tail", str(tail), "--file", which]
        if not follow:
            self._stream_once(args, out.write, out.flush)
            return
        reader = FrameReader(out)
        deadline, delay = None, 1.0
        while True:
            start = ["--from", f"{reader.position[0]}:{reader.position[1]}"] if reader.position else []
            try:
                done = self._stream_once(args + ["--follow", "--framed"] + start, reader.feed, out.flush, quiet=True)
            except UnreachableError:
                done = False
            if done:
                return
            deadline = deadline or time.monotonic() + float(rec.endpoint.get("retry_s", 60))
            if time.monotonic() >= deadline:
                raise UnreachableError(f"the log stream from {self.label()} ended early (the connection dropped)",
                                       f"the job is not affected: tether logs {rec.id} -f")
            sys.stderr.write(f"tether: the connection to {self.label()} dropped; reconnecting in {delay:.0f}s\n")
            time.sleep(delay)
            delay = min(delay * 2, 10.0)

    def _stream_once(self, args: List[str], write: Callable[[bytes], object], flush: Callable[[], object],
                     quiet: bool = False) -> bool:
        """One `agent logs` stream to its end: True when the host finished it, False (quiet) or
        UnreachableError when the connection dropped."""
        with self.client() as client:
            stream = client.stream("logs", *args)
            stream.close_stdin()
            try:
                while True:
                    chunk = stream.read_some()
                    if not chunk:
                        break
                    write(chunk)
                    flush()
            except BaseException:
                stream.kill()  # Ctrl-C: end the remote follower too
                raise
            rc = stream.wait()
        if rc == 0:
            return True
        detail = stream.stderr_text().strip().splitlines()
        if quiet and rc in (255, -1):  # the connection, not the host's answer
            return False
        raise UnreachableError(f"the log stream from {self.label()} ended early"
                               + (f" ({detail[-1][:200]})" if detail else " (the connection dropped)"),
                               f"the job is not affected: tether logs {self.record.id}")

    def pull(self, dest: Path, paths: Optional[Sequence[str]], console: Console) -> "PullResult":
        from launcher.transfer.pull import pull

        with self.client() as client:
            return pull(client, self.record.job_dir, list(paths or self.record.artifacts or ["outputs/"]),
                        dest, console, durable=self.record.instance_alive)

    def pull_backup(self, which: str, dest: Path, console: Console) -> "PullResult":
        """One backup (the newest that verifies, or by name), verified again here."""
        from launcher.transfer.pull import list_backups, pick_backup, pull, verify_pulled_backup

        with self.client() as client:
            path = f"backups/{pick_backup(list_backups(client, self.record.job_dir), which)}/"
            result = pull(client, self.record.job_dir, [path], dest, console, durable=self.record.instance_alive)
        verify_pulled_backup(dest / path)
        return result

    def inventory(self) -> dict:
        with self.client() as client:
            return client.call("inventory", self.record.job_dir)

    def backups(self, check: bool = True) -> List[BackupInfo]:
        from launcher.transfer.pull import list_backups

        with self.client() as client:
            return list_backups(client, self.record.job_dir, check=check)

    def mark_results_safe(self, how: str) -> None:
        """Tells the host its results are off it: a rented host may then go."""
        with self.client() as client:
            client.call("mark-safe", self.record.job_dir, "--how", how)

    # -- stop, resume, shell ---------------------------------------------------------------

    def stop(self, reason: str) -> StopAsked:
        """SIGTERM, grace, final backup; for a LOST job, the host kills the orphaned workload."""
        rec = self.record
        with self.client() as client:
            asked = client.call("stop", rec.job_dir, "--reason", reason)
        if isinstance(asked, dict) and asked.get("agent_alive") is False:
            killed = asked.get("killed_workload")
            return StopAsked(f"job {rec.id}'s agent was not running: "
                             + (f"killed its orphaned workload (pgid {killed}) and " if killed else "")
                             + "marked it STOPPED", wait=False)
        return StopAsked(f"asked job {rec.id} to stop", wait=True)

    def wait_stopped(self, timeout: float,
                     on_answer: Optional[Callable[[StatusAnswer], None]] = None) -> StatusAnswer:
        """Polls over one channel until the job has ended (or timeout): the last answer."""
        with self.client() as client:
            channel = client.channel(self.record.remote_root)
            answer = channel.wait_for_end(self.record.id, timeout, on_answer=on_answer)
            channel.close()
        self.ctx.registry.set_state(self.record.id, answer.state.value)
        return answer

    def resume(self) -> str:
        """The job's agent started again on its host; the state it was in. The secrets sent are
        those the spec recorded on this laptop at launch names (never what the host says its
        spec is: a host must not choose which of your variables it receives)."""
        from launcher.hub import backups as hub_mirror
        from launcher.spec import JobSpec

        rec, environ = self.record, self.ctx.environ
        if not rec.spec:
            raise UsageError(f"job {rec.id} was launched by an older tether that did not record its spec",
                             "launch it again")
        spec = JobSpec.model_validate(rec.spec)
        missing = [n for n in spec.secrets if n not in environ]
        if missing:
            raise SpecError(f"secret {missing[0]} of job {rec.id} is not set in the environment",
                            f"export {missing[0]} before resuming")
        secrets = {n: environ[n] for n in spec.secrets}
        hub = hub_mirror.for_job(spec.backup.hub_repo, environ)
        if hub is not None:  # the agent pushes backups to the Hub again
            secrets.update(hub.secrets)
        with self.client() as client:
            prepared = client.call("prepare-resume", rec.job_dir)
            started = client.start(rec.job_dir, secrets)
        if not started["started"]:
            raise RemoteError(f"the agent did not start again: {started['why']}",
                              f"its log: tether logs {rec.id} --file agent")
        self.ctx.registry.set_state(rec.id, "RUNNING")
        return prepared.get("previous_state") or "unknown"

    def history(self, files: Sequence[str], max_rows: Optional[int] = None, rounds: int = 8):
        """Its progress lines, heartbeats and events (launcher.jobs.history), thinned."""
        from launcher.jobs.history import MAX_ROWS, fetch

        with self.client() as client:
            return fetch(client, self.record, files, max_rows=max_rows or MAX_ROWS, rounds=rounds)

    def recent_progress(self, max_rows: int) -> list:
        """The job's progress lines, thinned to max_rows (for a sparkline and an ETA)."""
        return self.history(("progress",), max_rows, rounds=1).progress.rows

    def before_move(self, console: Console) -> None:
        """Two copies must not train: the old host asked (ask_before_move), its answer judged
        (refuse_two_copies)."""
        refuse_two_copies(self.record.id, [ask_before_move(self)], console)

    def shell_argv(self, cmd: Optional[List[str]]) -> List[str]:
        with self.client() as client:
            host = client.host  # only builds an OpenSSH command line; OpenSSH connects
            return host.shell_argv(cmd or None, self.record.job_dir)


class FrameReader:
    """Unframes `agent logs --framed` (`@<inode> <offset> <length>` then the bytes), writing
    only whole chunks, and remembers where the last one ended: the place to resume from."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.buffer = b""
        self.position: Optional[tuple] = None

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head, sep, rest = self.buffer.partition(b"\n")
            if not sep:
                return
            try:
                inode, offset, length = (int(x) for x in head.lstrip(b"@").split())
            except ValueError:
                raise RemoteError("the host's log stream was not understood") from None
            if len(rest) < length:
                return  # the rest of this chunk is still on its way
            self.out.write(rest[:length])
            if inode:
                self.position = (inode, offset + length)
            self.buffer = rest[length:]


MOVE_ASK_S = 15.0   # a move's question to the old host: its connect timeout plus this, at most


def ask_before_move(job: "AgentJob") -> JobView:
    """The old host asked once what it runs, on a connection of its own (a shared one to a
    host that froze since would outlast the connect timeout), no retry, within its connect
    timeout plus MOVE_ASK_S."""
    rec = job.record
    host = host_for_record(rec, job.ctx.places, max_retry_s=STATUS_RETRY_S, shared=False)
    try:
        limit = float(rec.endpoint.get("connect_timeout_s", 15)) + MOVE_ASK_S
        view = observe_on(host, [rec], job.label(), timeout=limit)[rec.id]
        if isinstance(view.error, RuntimeGoneError) and _still_there(host, rec.job_dir, limit):
            # Its runtime folder removed by hand while the job's folder stays: its agent may run on.
            view.error = RemoteError(f"job folder {rec.job_dir} is there though its tether runtime is not")
            view.reason = view.error.what
        return view
    finally:
        host.close()


def _still_there(host: Host, path: str, limit: float) -> bool:
    """Whether path exists on the host, asked of the shell (no runtime needed); not knowing is yes."""
    try:
        return host.run(["test", "-e", path], timeout=limit).returncode != 1
    except TetherError:
        return True


def refuse_two_copies(job_id: str, views: List[JobView], console: Console) -> None:
    """A move (resume --on) judged from what the old host(s) said. Refused where the job still
    runs, where its agent died there but its workload may not have (LOST, its folder there),
    and where a host answered but not with the job's state (authentication, a changed host
    key, an answer out of shape): only a host that cannot be reached is taken as gone, with
    a note of what to do if it comes back; as is one that holds no tether runtime of the job
    any more (wiped or rebuilt). --force (resume_on) skips the question."""
    for v in views:
        where = plain(v.host)
        if runs_there(v):
            raise UsageError(f"job {job_id} still runs on {where} ({v.state.value}): two copies would train",
                             f"stop it first (tether stop {job_id}), then resume --on")
        if v.state == JobState.LOST and v.answer.exists:
            raise UsageError(f"job {job_id}'s agent on {where} is not running, but its workload may still be",
                             f"tether stop {job_id} first (it ends an orphaned workload), then resume --on")
        if v.state == JobState.UNREACHABLE and not isinstance(v.error, (UnreachableError, RuntimeGoneError)):
            raise UsageError(f"cannot tell whether job {job_id} still runs on {where}: {plain(v.reason or '', 300)}",
                             "fix that, or if that host is truly gone: add --force to move without asking it")
    for v in views:
        if isinstance(v.error, RuntimeGoneError):
            console.print(f"[yellow]note:[/] {inert(v.host)} answers, but holds no tether runtime of job {job_id} any "
                          "more (wiped or rebuilt): nothing of it runs there")
        elif v.state == JobState.UNREACHABLE:
            console.print(f"[yellow]note:[/] {inert(v.host)} does not answer ({inert(v.reason or 'no reason given')}): "
                          f"taken as gone. If it comes back with job {job_id} running, stop it there "
                          "(its agent: kill the `agent run` process), or two copies train")


def _observe_group(group: List[AgentJob], recent: int = 0) -> Dict[str, JobView]:
    first = group[0]
    host = host_for_record(first.record, first.ctx.places, max_retry_s=STATUS_RETRY_S)
    try:
        return observe_on(host, [h.record for h in group], first.label(), recent)
    finally:
        host.close()


def observe_on(host: Host, group: List[JobRecord], label: str, recent: int = 0,
               timeout: float = 60) -> Dict[str, JobView]:
    """One host's jobs from one status command; UNREACHABLE when it does not answer (its
    error kept: the view's error). The host stays open (the dashboard reuses its connection)."""
    from launcher.jobs.history import checked_rows

    first = group[0]
    try:
        answers = AgentClient(host, first.python, first.runtime_dir).status([r.job_dir for r in group], recent,
                                                                            timeout)
        if not isinstance(answers, list) or len(answers) != len(group):
            raise RemoteError(f"{host.name} answered status with something that is not one answer per job")
        views = {r.id: view_of(r, a) for r, a in zip(group, answers)}
        for r, a in zip(group, answers):
            if recent and isinstance(a, dict) and "recent" in a:  # else an older agent: asked apart
                views[r.id].recent = checked_rows(a["recent"], 2 * recent)
    except TetherError as exc:
        views = {r.id: JobView(r, JobState.UNREACHABLE, reason=exc.line(), error=exc, spend_usd=spend_of(r),
                               last_known=last_known(r)) for r in group}
    for v in views.values():
        v.host = label
    return views


def view_of(r: JobRecord, a: object) -> JobView:
    """A status answer, checked, as the job's view."""
    try:
        answer = StatusAnswer.from_json(a)
    except ValueError as exc:
        return JobView(r, JobState.UNREACHABLE, reason=f"the host's answer was not understood: {exc}",
                       last_known=last_known(r))
    if not answer.exists:
        if r.last_state == "LAUNCHING":  # the launch was killed before it created anything there
            return JobView(r, JobState.FAILED, reason="its launch did not finish, and nothing of it is on the "
                           f"host: launch again (tether forget {r.id} drops this record)", answer=answer)
        return JobView(r, JobState.LOST, reason=f"job folder {r.job_dir} is gone from the host", answer=answer)
    return JobView(r, answer.state, reason=answer.reason, answer=answer, spend_usd=answer.spend_usd or spend_of(r))
