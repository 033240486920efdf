"""`backup.mirror: hf://user/repo`: each new verified backup follows the job off the host.

A duty of the monitor loop beside BackupKeeper. It never blocks the loop: the push runs in
its own low-priority process (`python -m agent hub-mirror`, the token on its stdin); node K of
a multi-node job pushes under node-K/ in the repo and prunes only there. A push
that fails is retried with growing waits and shown in the heartbeat and the events; before
the agent exits it waits (backup.mirror_wait_s) for the newest backup to arrive. When
backups come faster than pushes, the newest wins and the ones it supersedes are named in an
event, never dropped silently.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Callable, List, Optional

from . import backup
from .book import StatusBook
from .clock import REAL, Clock
from .files import read_json, write_json_atomic
from .paths import JobDir, node_prefix
from .plan import RunPlan
from .protocol import self_argv

RETRY_S = (10.0, 30.0, 60.0, 120.0, 300.0)
Wait = Callable[[Callable[[], bool], float], bool]  # the monitor loop's: (done, seconds) -> done in time


def _spawn_pusher(argv: List[str], log_path) -> subprocess.Popen:
    with open(log_path, "ab") as log:  # the library's own words, if any
        return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)


class MirrorKeeper:
    def __init__(self, job: JobDir, plan: RunPlan, book: StatusBook, clock: Clock = REAL,
                 spawn: Optional[Callable[[List[str]], subprocess.Popen]] = None) -> None:
        self.job, self.plan, self.book, self.clock = job, plan, book, clock
        self.spawn_process = spawn or _spawn_pusher
        self.repo = plan.mirror_repo
        self.token: Optional[str] = None
        self.pusher: Optional[subprocess.Popen] = None
        self.pushing: Optional[backup.Backup] = None
        self.failures = 0
        self.retry_at = 0.0
        self.error: Optional[str] = None
        self.lasting = False    # the error will not pass by waiting (no huggingface_hub on the host)
        self.superseded: set = set()
        saved = read_json(job.mirror_state) or {}
        self.remote: List[str] = list(saved.get("remote") or [])  # what the Hub holds, as of our last push
        self.last: Optional[dict] = saved.get("last")

    @property
    def enabled(self) -> bool:
        return self.repo is not None

    def in_use(self) -> List[str]:
        """The backup being pushed: a slow push must not lose it to pruning half-way."""
        return [self.pushing.name] if self.pushing is not None else []

    def pending(self) -> Optional[backup.Backup]:
        """The newest backup on the host, if the Hub does not have it yet."""
        found = backup.list_backups(self.job)
        return found[-1] if found and found[-1].name not in self.remote else None

    # -- the periodic duty ----------------------------------------------------------------

    def tick(self) -> None:
        if not self.enabled:
            return
        if self.pusher is not None:
            self._poll()
            return
        target = self.pending()
        if target is None or self.clock.monotonic() < self.retry_at:
            return
        if not self.token:
            if self.error is None:
                self.error, self.lasting = "no Hub token reached the host: resume the job with HF_TOKEN set", True
                self.book.event("mirror-failed", name=target.name, error=self.error)
            return
        self._start(target)

    def _start(self, target: backup.Backup) -> None:
        older = [b.name for b in backup.list_backups(self.job)
                 if b.name not in self.remote and b.name != target.name and b.name not in self.superseded]
        if older:
            self.superseded.update(older)
            self.book.event("mirror-superseded", names=older, by=target.name)
        self.pusher = self._spawn(target.name)
        self.pushing = target
        self.book.event("mirror-started", name=target.name, step=target.step, repo=self.repo,
                        attempt=self.failures + 1)

    def _spawn(self, what: str) -> subprocess.Popen:
        """`agent hub-mirror JOB WHAT` at low priority, the request (with the token) on stdin."""
        argv = self_argv("hub-mirror", str(self.job.path), what)
        ionice = shutil.which("ionice")
        if ionice:
            argv = [ionice, "-c", "3"] + argv
        self.job.logs.mkdir(parents=True, exist_ok=True)
        proc = self.spawn_process(argv, self.job.hub_mirror_log)
        request = {"token": self.token, "repo": self.repo, "keep": self.plan.backup_keep,
                   "endpoint": self.plan.hub_endpoint, "disable_xet": self.plan.hub_disable_xet,
                   "prefix": node_prefix(self.plan.node)}  # node K's folder of a multi-node job
        try:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(request).encode())
            proc.stdin.close()
        except OSError:
            pass  # it died at once: its exit says why
        return proc

    def _poll(self, wait: bool = False) -> None:
        assert self.pusher is not None and self.pushing is not None
        if not wait and self.pusher.poll() is None:
            return
        assert self.pusher.stdout is not None
        out = self.pusher.stdout.read()  # one JSON line (the library's own words go to the log)
        self.pusher.stdout.close()
        self.pusher.wait()
        target, self.pusher, self.pushing = self.pushing, None, None
        try:
            result = json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            result = {"ok": False, "error": "the push process gave no answer; see logs/hub-mirror.log"}
        if result.get("ok"):
            self.remote = list(result["remote"])
            self.last = {"name": target.name, "step": target.step, "at": self.clock.time()}
            self.failures, self.error, self.retry_at, self.lasting = 0, None, 0.0, False
            write_json_atomic(self.job.mirror_state, {"repo": self.repo, "remote": self.remote, "last": self.last})
            self.book.event("mirror-pushed", name=target.name, step=target.step, repo=self.repo,
                            pruned=result.get("pruned") or [])
        elif result.get("gone"):
            self.book.event("mirror-superseded", names=[target.name], by=None)
        else:
            self.lasting = bool(result.get("no_library"))
            delay = RETRY_S[-1 if self.lasting else min(self.failures, len(RETRY_S) - 1)]
            self.failures += 1
            self.error = result.get("error") or "unknown error"
            self.retry_at = self.clock.monotonic() + delay
            self.book.event("mirror-failed", name=target.name, error=self.error, attempt=self.failures,
                            retry_in_s=delay)

    # -- at the end -----------------------------------------------------------------------

    def drain(self, seconds: float, wait: Wait, should_quit: Callable[[], bool] = lambda: False) -> Optional[str]:
        """Waits (the loop's wait: duties keep running, so a failed push is retried) until the
        newest backup is on the Hub. None when it is there, else what stood in the way."""
        if not self.enabled:
            return None
        self.retry_at = 0.0  # the last backup was just taken: try at once, then the usual waits

        def over() -> bool:  # landed, or a host without the library: say so now, not wait it out
            return should_quit() or (self.pusher is None and (self.pending() is None or self.lasting))

        wait(over, seconds)
        if self.pusher is not None:
            self.pusher.kill()
            self._poll(wait=True)
        newest = self.pending()
        if newest is None:
            return None
        return f"backup {newest.name} did not reach hf://{self.repo} ({self.error or 'timed out'})"

    def push_outputs(self, seconds: float, wait: Wait, should_quit: Callable[[], bool]) -> Optional[str]:
        """At the end: the job's outputs/ to the mirror too, so its results are off the host.
        None when pushed (or there is nothing to push), else what stood in the way."""
        if not self.enabled or not any(p.is_file() for p in self.job.outputs.rglob("*")):
            return None
        if not self.token:
            return "no Hub token reached the host"
        proc = self._spawn("outputs/")
        done = wait(lambda: should_quit() or proc.poll() is not None, seconds)
        if proc.poll() is None:
            proc.kill()
        assert proc.stdout is not None
        out = proc.stdout.read()
        proc.wait()
        try:
            result = json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            result = {"ok": False, "error": "the push gave no answer" if done else "timed out"}
        if not result.get("ok"):
            self.book.event("mirror-outputs-failed", error=result.get("error"))
            return f"outputs/ did not reach hf://{self.repo} ({result.get('error')})"
        self.book.event("mirror-outputs-pushed", repo=self.repo, files=result.get("files"))
        return None

    def summary(self) -> Optional[dict]:
        if not self.enabled:
            return None
        pending = self.pending()
        return {
            "repo": self.repo,
            "last": self.last["name"] if self.last else None,
            "last_step": self.last["step"] if self.last else None,
            "pushed_at": self.last["at"] if self.last else None,
            "pushing": self.pushing.name if self.pushing else None,
            "pending": pending.name if pending else None,
            "error": self.error,
            "failures": self.failures,
            "retry_in_s": round(max(0.0, self.retry_at - self.clock.monotonic()), 1) if self.error else None,
        }
