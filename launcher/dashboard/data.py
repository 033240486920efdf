"""What the dashboard shows, gathered through the CLI's own channel: `observe_on` for states
(one status command per host, all hosts at once, each with its own deadline: a dead host is
UNREACHABLE without holding up the others) and `agent history` for curves (only new lines).
Everything here is data for JSON; the pages escape it (textContent only)."""

from __future__ import annotations

import os

import threading
import time
from dataclasses import asdict
from typing import Any, Dict, List, Optional, Tuple

from agent.protocol import JobState

from launcher.show.curves import curves, markers, names
from launcher.errors import TetherError
from launcher.jobs.history import FILES, JobHistory, refresh
from launcher.registry import JobRecord, Registry
from launcher.backends import home_record, label_of, observe, observe_on, reaches_host
from launcher.jobs.view import JobView
from launcher.transfer.pull import list_backups
from launcher.settings import Places
from launcher.text import plain_lines
from launcher.dashboard.hosts import HostPool, host_key
from launcher.dashboard.rows import job_row, pending_row

SPARK_ROWS = 48
LOG_BYTES = 256 * 1024


class Monitor:
    """Polls every host in the background; pages read the newest snapshot and never wait on
    a host for longer than answer_within_s."""

    def __init__(self, places: Places, every_s: float = 2.0, answer_within_s: float = 3.0) -> None:
        self.places, self.every_s, self.answer_within_s = places, every_s, answer_within_s
        self.pool = HostPool(places)
        self._lock = threading.Lock()
        self._records: List[JobRecord] = []
        self._views: Dict[str, JobView] = {}
        self._asking: Dict[str, float] = {}          # host key -> when its status poll began (monotonic)
        self._busy: set = set()                       # host keys with a poll (states or sparklines) running
        self._sparks: Dict[str, JobHistory] = {}
        self._spark_done: set = set()                 # ended jobs whose curve is complete
        self._details: Dict[Tuple[str, int], JobHistory] = {}   # (job, node): its curves read so far
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tether-ui-monitor", daemon=True)

    def start(self) -> "Monitor":
        self._thread.start()
        return self

    def close(self) -> None:
        """Stops polling; a poll still waiting on a silent host is a daemon thread and is left
        to its connect timeout (it never holds up Ctrl-C)."""
        self._stop.set()
        self._thread.join(10)
        self.pool.close()

    def _registry(self) -> Registry:
        return Registry(self.places.registry)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.every_s)

    def poll_once(self) -> None:
        registry = self._registry()
        try:
            records = registry.all()
        finally:
            registry.close()
        groups: Dict[str, List[JobRecord]] = {}
        for r in records:
            groups.setdefault(host_key(r), []).append(r)
        with self._lock:
            self._records = records
            for key, group in groups.items():
                if key not in self._busy and not self._stop.is_set():
                    self._busy.add(key)                     # one poll per host at a time
                    self._asking[key] = time.monotonic()
                    threading.Thread(target=self._poll_group, args=(key, group), daemon=True,
                                     name=f"tether-ui-poll-{len(self._asking)}").start()

    def _poll_group(self, key: str, group: List[JobRecord]) -> None:
        """States first (the table shows them at once), then the sparklines' new lines."""
        try:
            views = self._ask_states(group)
        except Exception as exc:  # a poll that fails shows why, and the next one tries again
            views = {r.id: JobView(r, JobState.UNREACHABLE, reason=f"dashboard: {exc!r}"[:300]) for r in group}
        with self._lock:
            self._views.update(views)
            self._asking.pop(key, None)
        try:
            self._ask_sparks(group, views)
        finally:
            with self._lock:
                self._busy.discard(key)

    def _ask_states(self, group: List[JobRecord]) -> Dict[str, JobView]:
        registry = self._registry()
        try:
            if not reaches_host(group[0]):  # no pooled connection: as `tether status` asks them
                return {v.record.id: v for v in observe(group, self.places, registry, os.environ)}
            with self.pool.host(group[0]) as host:
                views = observe_on(host, group, label_of(group[0]))
            for v in views.values():
                if v.state != JobState.UNREACHABLE:
                    registry.set_state(v.record.id, v.state.value)
            return views
        finally:
            registry.close()

    def _ask_sparks(self, group: List[JobRecord], views: Dict[str, JobView]) -> None:
        """The loss curves of the jobs table: new lines only; an ended job's once more, then never."""
        todo = [r for r in group if views[r.id].state not in (JobState.UNREACHABLE, JobState.LOST)
                and r.id not in self._spark_done and reaches_host(r)]
        if not todo:
            return
        items = [(r, self._sparks.setdefault(r.id, JobHistory(max_rows=SPARK_ROWS))) for r in todo]
        by_runtime: Dict[tuple, List[Tuple[JobRecord, JobHistory]]] = {}
        for r, hist in items:  # jobs launched by another tether version run another agent
            by_runtime.setdefault((r.python, r.runtime_dir), []).append((r, hist))
        for same in by_runtime.values():
            try:
                with self.pool.client(same[0][0]) as client:
                    refresh(client, same, ("progress",), SPARK_ROWS)
            except Exception:  # an agent older than `history`, or a host gone since: no sparkline
                continue
        for r, hist in items:
            v = views[r.id]  # a record whose folder is not there yet reads as FAILED: not final
            if v.state.is_terminal and v.answer.exists and hist.exists and not hist.behind:
                self._spark_done.add(r.id)

    # -- what the pages ask ------------------------------------------------------------------

    def wait_first_round(self, timeout: float) -> None:
        """Until every host answered once or has been silent for answer_within_s (a page's
        first load), or timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = time.monotonic()
            with self._lock:
                if self._records and all(r.id in self._views or now - self._asking.get(host_key(r), now)
                                         > self.answer_within_s for r in self._records):
                    return
            time.sleep(0.05)

    def job_rows(self) -> List[Dict[str, Any]]:
        now = time.monotonic()
        out = []
        with self._lock:
            for rec in self._records:
                began = self._asking.get(host_key(rec))
                silent = began is not None and now - began > self.answer_within_s
                view = self._views.get(rec.id)
                if silent:
                    view = JobView(rec, JobState.UNREACHABLE,
                                   reason=f"the host has not answered for {now - began:.0f}s (still asking)")
                hist = self._sparks.get(rec.id)
                out.append(pending_row(rec) if view is None else job_row(view, hist.progress.rows if hist else []))
        return out

    def record(self, job_id: str) -> JobRecord:
        with self._lock:
            for r in self._records:
                if r.id == job_id:
                    return r
        registry = self._registry()
        try:
            return registry.resolve(job_id)
        finally:
            registry.close()

    def job_detail(self, job_id: str, node: Optional[int] = None) -> Dict[str, Any]:
        """Curves of every metric, host resources over time, markers, events, the spec: of the
        job's home (node 0 of a multi-node job), or of node K."""
        rec = self.record(job_id)
        where = home_record(rec, node)
        hist = self._details.setdefault((rec.id, node or 0), JobHistory())
        error = None
        try:
            with self.pool.client(where) as client:
                for _ in range(3):
                    refresh(client, [(where, hist)], FILES)
                    if not hist.behind:
                        break
        except TetherError as exc:
            error = exc.line()
        with self._lock:
            view = self._views.get(rec.id)
            home = self._sparks.get(rec.id)
        rows = hist.progress.rows
        # The head is the job's, whichever node is shown: node K's rows are not the job's step.
        head_rows = rows if not node else home.progress.rows if home else []
        return {
            "job": job_row(view, head_rows) if view else pending_row(rec),
            "spec": rec.spec, "error": error, "behind": hist.behind,
            "metrics": names(rows), "curves": curves(rows),
            "resources": curves(hist.heartbeats.rows, with_steps=False),
            "markers": [asdict(m) for m in markers(hist.events.rows, rows)],
            "events": hist.events.rows[-200:],
        }

    def log_tail(self, job_id: str, which: str, lines: int, node: Optional[int] = None) -> str:
        rec = home_record(self.record(job_id), node)
        with self.pool.client(rec) as client:
            argv = client.argv("logs", rec.job_dir, "--tail", str(lines), "--file", which)
            done = client.host.run(argv, timeout=30).check("agent logs")
        return plain_lines(done.stdout[-LOG_BYTES:].decode(errors="replace"), LOG_BYTES)

    def backups(self, job_id: str, node: Optional[int] = None) -> List[Dict[str, Any]]:
        """The listing without re-hashing (fast); `verify` in the page re-hashes (tether backups)."""
        rec = home_record(self.record(job_id), node)
        with self.pool.client(rec) as client:
            return [asdict(b) for b in list_backups(client, rec.job_dir, check=False)]

    def forget_detail(self, job_id: str) -> None:
        """The curves read so far of the job (each node's), read afresh next time."""
        for key in [k for k in list(self._details) if k[0] == job_id]:
            self._details.pop(key, None)
