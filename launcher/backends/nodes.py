"""A job on several hosts (host.nodes > 1): one handle over one AgentJob per node. Status is a
row per node plus the job's state derived from them; logs are merged with `[node k]`; stop and
resume act on every node. Pull and backups are node 0's unless another node or every node is
asked for (rank 0 writes the model; each node keeps its own checkpoint shards, and a restart
needs all of them: `pull --backup --all-nodes` brings the same step from each, into node-k/)."""

from __future__ import annotations

import dataclasses
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Dict, List, Optional, Sequence

from agent.protocol import BackupInfo, JobState, StatusAnswer

from launcher.backends.agent import AgentJob, ask_before_move, refuse_two_copies
from launcher.backends.base import Context, StopAsked
from launcher.errors import UsageError
from launcher.jobs.view import JobView
from launcher.registry import JobRecord

if TYPE_CHECKING:
    from rich.console import Console

    from launcher.transfer.pull import PullResult

_AWAY = (JobState.UNREACHABLE, JobState.LOST)


def check_node(rec: JobRecord, k: int) -> None:
    """k names one of the job's nodes, or one line says why not (the CLI's --node, the
    dashboard's pick)."""
    if not rec.nodes:
        raise UsageError(f"job {rec.id} runs on one host: it has no node {k}", "ask for the job itself")
    if not 0 <= k < len(rec.nodes):
        raise UsageError(f"job {rec.id} has nodes 0 to {len(rec.nodes) - 1}, not {k}", "pick one of those with --node")


def node_record(rec: JobRecord, node: dict) -> JobRecord:
    """Node k as a one-host job (the same id: the host knows the job by it)."""
    return dataclasses.replace(rec, endpoint=node["endpoint"], remote_root=node["remote_root"],
                               job_dir=node["job_dir"], python=node["python"], runtime_dir=node["runtime_dir"],
                               nodes=None)


def derived(rec: JobRecord, views: List[JobView]) -> JobView:
    """The job's state from its nodes': ended only when every node has (a failure first), a
    node out of reach said as such, else node 0's. Step and metrics are node 0's."""
    states = [v.state for v in views]
    pick = 0
    if all(s.is_terminal for s in states):
        pick = next((k for k, s in enumerate(states) if s == JobState.FAILED),
                    next((k for k, s in enumerate(states) if s == JobState.STOPPED), 0))
    elif any(s in _AWAY for s in states):
        pick = next(k for k, s in enumerate(states) if s in _AWAY)
    elif states[0].is_terminal:
        pick = next(k for k, s in enumerate(states) if not s.is_terminal)
    chosen, first = views[pick], views[0]
    reason = chosen.reason if pick == 0 or (chosen.reason or "").startswith("node ") else \
        f"node {pick}: {chosen.reason}"
    return JobView(rec, chosen.state, reason=reason, answer=first.answer, error=chosen.error,
                   spend_usd=first.spend_usd, last_known=first.last_known,
                   host=NodesJob.label_of(rec), nodes=views)


class NodesJob:
    reaches_host = False   # several hosts: the dashboard asks as `tether status` does

    def __init__(self, record: JobRecord, ctx: Context) -> None:
        self.record, self.ctx = record, ctx
        # The nodes are asked from threads: they leave the registry (one SQLite connection,
        # bound to its thread) to this handle.
        quiet = dataclasses.replace(ctx, registry=_NoRegistry())
        self.nodes = [AgentJob(node_record(record, n), quiet) for n in record.nodes or []]

    def label(self) -> str:
        return self.label_of(self.record)

    @staticmethod
    def label_of(rec: JobRecord) -> str:
        first = AgentJob.label_of(node_record(rec, (rec.nodes or [{}])[0])) if rec.nodes else "?"
        return f"{len(rec.nodes or [])} nodes: {first}, ..."

    @staticmethod
    def home_record(rec: JobRecord) -> JobRecord:
        return node_record(rec, rec.nodes[0]) if rec.nodes else rec

    def _each(self, fn: Callable[[AgentJob], object]) -> list:
        with ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
            return list(pool.map(fn, self.nodes))

    def node(self, k: int) -> AgentJob:
        check_node(self.record, k)
        return self.nodes[k]

    @classmethod
    def observe_all(cls, handles: List["NodesJob"], recent: int = 0) -> Dict[str, JobView]:
        width = max(len(h.nodes) for h in handles)
        with ThreadPoolExecutor(max_workers=width) as pool:  # node k of every job: one command per host
            seen = list(pool.map(lambda k: AgentJob.observe_all([h.nodes[k] for h in handles if k < len(h.nodes)],
                                                                recent), range(width)))
        return {h.record.id: derived(h.record, [dataclasses.replace(seen[k][h.record.id], host=n.label())
                                                for k, n in enumerate(h.nodes)]) for h in handles}

    # -- logs ------------------------------------------------------------------------------

    def logs(self, tail: int, follow: bool, which: str, out: BinaryIO, node: Optional[int] = None) -> None:
        """One node's log as it is; every node's, each line prefixed `[node k]`."""
        if node is not None:
            self.node(node).logs(tail, follow, which, out)
            return
        lock = threading.Lock()
        sinks = [Prefixed(f"[node {k}] ".encode(), out, lock) for k in range(len(self.nodes))]
        if not follow:  # node by node, each whole
            for n, sink in zip(self.nodes, sinks):
                n.logs(tail, False, which, sink)
                sink.close()
            return
        self._each(lambda n: (n.logs(tail, True, which, sinks[self.nodes.index(n)]),
                              sinks[self.nodes.index(n)].close()))

    # -- node 0's files (or another's, or every node's) ------------------------------------

    def pull(self, dest: Path, paths: Optional[Sequence[str]], console: "Console") -> "PullResult":
        return self.nodes[0].pull(dest, paths, console)

    def pull_backup(self, which: str, dest: Path, console: "Console") -> "PullResult":
        return self.nodes[0].pull_backup(which, dest, console)

    def pull_all(self, dest: Path, paths: Optional[Sequence[str]], console: "Console") -> "PullResult":
        """Every node's files, node k's into dest/node-k/ (one node after the other)."""
        from launcher.transfer.node_backups import merged, node_folder

        return merged(dest, [n.pull(node_folder(dest, k), paths, console) for k, n in enumerate(self.nodes)])

    def pull_backup_all(self, which: str, dest: Path, console: "Console") -> "PullResult":
        """The same step's backup from every node (its ZeRO shards), node k's into
        dest/node-k/backups/<its name>/, each verified against its manifest."""
        from launcher.transfer.node_backups import merged, node_folder, pick_per_node

        names = pick_per_node(self._each(lambda n: n.backups()), which)
        return merged(dest, [n.pull_backup(name, node_folder(dest, k), console)
                             for k, (n, name) in enumerate(zip(self.nodes, names))])

    def inventory(self) -> dict:
        return self.nodes[0].inventory()

    def backups(self, check: bool = True) -> List[BackupInfo]:
        return self.nodes[0].backups(check)

    def mark_results_safe(self, how: str) -> None:
        self._each(lambda n: n.mark_results_safe(how))

    def history(self, files: Sequence[str], max_rows: Optional[int] = None, rounds: int = 8):
        return self.nodes[0].history(files, max_rows, rounds)

    def recent_progress(self, max_rows: int) -> list:
        return self.nodes[0].recent_progress(max_rows)

    def shell_argv(self, cmd: Optional[List[str]]) -> List[str]:
        return self.nodes[0].shell_argv(cmd)

    # -- every node ------------------------------------------------------------------------

    def stop(self, reason: str) -> StopAsked:
        asked = self._each(lambda n: n.stop(reason))
        return StopAsked(f"asked job {self.record.id} to stop on {len(self.nodes)} nodes",
                         wait=any(a.wait for a in asked))

    def wait_stopped(self, timeout: float,
                     on_answer: Optional[Callable[[StatusAnswer], None]] = None) -> StatusAnswer:
        answers = self._each(lambda n: n.wait_stopped(timeout, on_answer if n is self.nodes[0] else None))
        worst = next((a for a in answers if a.state == JobState.FAILED), answers[0])
        self.ctx.registry.set_state(self.record.id, worst.state.value)
        return worst

    def resume(self) -> str:
        previous = self._each(lambda n: n.resume())
        self.ctx.registry.set_state(self.record.id, "RUNNING")
        return previous[0]

    def before_move(self, console: "Console") -> None:
        """Two copies must not train: every old host asked at once (ask_before_move), and none
        may say the job still runs there (each node's mirrored backups carry it:
        jobs/resume_nodes.py)."""
        refuse_two_copies(self.record.id, self._each(ask_before_move), console)


class _NoRegistry:
    """What a node's AgentJob writes to the registry goes nowhere: NodesJob writes the job's."""

    def set_state(self, job_id: str, state: str, step: Optional[int] = None) -> None:
        pass


class Prefixed(io.RawIOBase):
    """A byte sink that writes whole lines to out, each with a prefix (the rest at close)."""

    def __init__(self, prefix: bytes, out: BinaryIO, lock: threading.Lock) -> None:
        self.prefix, self.out, self.lock, self.partial = prefix, out, lock, b""

    def write(self, data: bytes) -> int:
        *lines, self.partial = (self.partial + bytes(data)).split(b"\n")
        if lines:
            with self.lock:
                self.out.write(b"".join(self.prefix + line + b"\n" for line in lines))
                self.out.flush()
        return len(data)

    def flush(self) -> None:
        """Whole lines are written as they come; a partial one waits for its end."""

    def close(self) -> None:
        if self.partial:
            with self.lock:
                self.out.write(self.prefix + self.partial + b"\n")
                self.out.flush()
            self.partial = b""
