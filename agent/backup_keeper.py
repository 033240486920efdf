"""When to take a backup, and the low-priority process that takes it. A duty of the monitor
loop: it never blocks the loop and never changes the job's state itself."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Collection, Dict, List, Optional, Tuple

from . import backup
from .book import StatusBook
from .clock import REAL, Clock
from .paths import JobDir
from .plan import RunPlan
from .progress_reader import ProgressReader
from .protocol import self_argv
from .signals import listeners, send

Wait = Callable[[Callable[[], bool], float], bool]  # (done, seconds) -> done in time

QUIET_S = 3.0  # a folder nobody announces is backed up once unchanged this long
BUSY_S = 10.0  # ... or, changing longer than this, its newest subfolder that is unchanged


def _spawn_copier(argv: List[str]) -> subprocess.Popen:
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _fingerprint(folder: Path) -> Tuple[frozenset, float]:
    items, newest = [], 0.0
    for p in folder.rglob("*") if folder.is_dir() else []:
        if p.is_file() and not p.is_symlink():
            st = p.stat()
            items.append((p.relative_to(folder).as_posix(), st.st_size, st.st_mtime_ns))
            newest = max(newest, st.st_mtime)
    return frozenset(items), newest


class BackupKeeper:
    def __init__(self, job: JobDir, plan: RunPlan, book: StatusBook, progress: ProgressReader,
                 on_disk_full: Callable[[str], None], in_use: Callable[[], Collection[str]] = tuple,
                 clock: Clock = REAL, spawn: Optional[Callable[[List[str]], subprocess.Popen]] = None) -> None:
        self.job, self.plan, self.book, self.progress = job, plan, book, progress
        self.clock = clock
        self.spawn = spawn or _spawn_copier
        self.on_disk_full = on_disk_full
        self.in_use = in_use  # backups another duty is reading: not pruned until it is done
        self.spared = False   # a prune left one in use: prune again once it is free
        self.next_due = clock.monotonic() + plan.backup_every_s
        self.backed_seq = progress.checkpoint_seq
        self.backed_print: frozenset = frozenset()
        self.asked_at: Optional[float] = None
        self.copier: Optional[subprocess.Popen] = None
        self.copier_seq = 0
        self.copier_print: frozenset = frozenset()
        self.last: Optional[dict] = None       # the newest backup taken by this agent
        self.last_error: Optional[str] = None
        self.known_good: set = set()           # taken (hence verified) by this agent
        self.broken: Dict[str, str] = {}       # backups that stopped verifying, and why
        self.keep_steps_above: Optional[int] = None  # a run that restarted from scratch: keep these
        self.settling_since: Optional[float] = None  # monotonic: the folder has been changing since
        self.backed_sub: Optional[Tuple[str, frozenset]] = None

    # -- the periodic duty ----------------------------------------------------------------

    def tick(self, pgid: Optional[int]) -> None:
        if self.copier is not None:
            self._poll_copier()
            return
        self.tidy()
        now = self.clock.monotonic()
        if self.asked_at is not None:
            if self.progress.checkpoint_seq > self.backed_seq:
                self.asked_at = None
                self._start_announced()
            elif now - self.asked_at > self.plan.backup_wait_s:
                self.book.event("checkpoint-not-announced", waited_s=self.plan.backup_wait_s)
                self.asked_at = None
            elif self._start_quiet_folder() == "started":  # it saved without announcing: fine too
                self.asked_at = None
            return
        if now < self.next_due or pgid is None:
            return
        self.next_due = now + self.plan.backup_every_s
        if self.progress.checkpoint_seq > self.backed_seq:
            self._start_announced()
            return
        asked = listeners(self.job, pgid, "SIGUSR1")
        if asked:
            send(asked, signal.SIGUSR1)
            self.asked_at = now
            self.book.event("checkpoint-requested", pids=asked)
        elif self._start_quiet_folder() == "settling":
            self.next_due = now + QUIET_S  # files still changing: look again soon

    def _start_announced(self) -> None:
        """The newest announced checkpoint that is still there (a Trainer deletes old ones, maybe
        before its copy began); if none is, the folder as it is."""
        for source, step in reversed(self.progress.announced):
            if backup.live_checkpoint(self.job, source, with_files=False) is not None:
                if source != self.progress.last_checkpoint:
                    self.book.event("checkpoint-gone", name=self.progress.last_checkpoint, instead=source)
                self._start(source, step, self.progress.checkpoint_seq, frozenset())
                return
        self.book.event("checkpoint-gone", name=self.progress.last_checkpoint, instead="checkpoints/")
        self.backed_seq = self.progress.checkpoint_seq
        fp, _ = _fingerprint(self.job.checkpoints)
        if fp and fp != self.backed_print:
            self._start("", self.progress.step, self.backed_seq, fp)

    def _start_quiet_folder(self, settle: bool = True) -> str:
        """A workload that announces nothing: the whole folder, once it is quiet; a folder that
        never stays quiet (a Trainer saving every second): its newest subfolder that is.
        Returns started, unchanged or settling."""
        if self.progress.checkpoint_seq:
            return "unchanged"
        fp, newest = _fingerprint(self.job.checkpoints)
        if not fp or fp == self.backed_print:
            self.settling_since = None
            return "unchanged"
        if settle and time.time() - newest < QUIET_S:  # file times: the real wall clock
            self.settling_since = self.settling_since or self.clock.monotonic()
            if self.clock.monotonic() - self.settling_since > BUSY_S and self._start_quiet_subfolder():
                return "started"
            return "settling"
        self.settling_since = None
        self._start("", self.progress.step, self.backed_seq, fp)
        return "started"

    def _start_quiet_subfolder(self) -> bool:
        """The newest subfolder of checkpoints/ with nothing written for QUIET_S (a finished
        checkpoint-N), unless it was the last one backed up."""
        quiet = []
        for sub in self.job.checkpoints.iterdir():
            if sub.is_dir() and not sub.is_symlink():
                fp, newest = _fingerprint(sub)
                if fp and time.time() - newest >= QUIET_S:
                    quiet.append((newest, sub.name, fp))
        if not quiet:
            return False
        _, name, fp = max(quiet)
        if (name, fp) == self.backed_sub:
            return False
        digits = re.findall(r"\d+", name)
        self.backed_sub = (name, fp)
        self._start(name, int(digits[-1]) if digits else self.progress.step, self.backed_seq, frozenset())
        return True

    def _start(self, source: str, step: Optional[int], seq: int, fp: frozenset) -> None:
        argv = self_argv("backup", str(self.job.path), source, "-" if step is None else str(step),
                         "link" if self.plan.backup_link else "copy")
        ionice = shutil.which("ionice")
        if ionice:  # idle IO class: the training loop's reads and writes go first
            argv = [ionice, "-c", "3"] + argv
        self.copier = self.spawn(argv)
        self.copier_seq, self.copier_print = seq, fp
        self.book.event("backup-started", source=source or "checkpoints/", step=step)

    def _poll_copier(self, wait: bool = False) -> None:
        assert self.copier is not None
        if not wait and self.copier.poll() is None:
            return
        out, _ = self.copier.communicate()
        self.copier = None
        try:
            result = json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            result = {"ok": False, "error": out.decode(errors="replace")[-300:], "disk_full": False}
        if result.get("ok"):
            self.last, self.last_error = result["backup"], None
            self.known_good.add(self.last["name"])
            self.backed_seq = max(self.backed_seq, self.copier_seq)
            if self.copier_print:
                self.backed_print = self.copier_print
            gone = self._prune()
            self.book.event("backup-done", name=self.last["name"], step=self.last["step"],
                            size=self.last["size"], pruned=gone)
        else:
            self.last_error = result.get("error")
            self.backed_seq = max(self.backed_seq, self.copier_seq)  # do not retry the same one at once
            self.book.event("backup-failed", error=self.last_error, disk_full=bool(result.get("disk_full")),
                            kept=[b.name for b in backup.list_backups(self.job)])
            if result.get("disk_full"):
                self.on_disk_full(self.last_error or "disk full")

    def tidy(self) -> None:
        """Prunes what an earlier prune spared because it was in use, once it no longer is."""
        if self.spared:
            gone = self._prune()
            if gone:
                self.book.event("backups-pruned", names=gone)

    def _prune(self) -> List[str]:
        spare = list(self.in_use())
        if self.keep_steps_above is not None:
            spare += [b.name for b in backup.list_backups(self.job)
                      if b.step is not None and b.step >= self.keep_steps_above]
        gone = backup.prune(self.job, self.plan.backup_keep, spare=spare, known_good=self.known_good)
        self.known_good.difference_update(gone)
        self.spared = bool(spare) and len(backup.list_backups(self.job)) > self.plan.backup_keep
        return gone

    def check_kept(self) -> List[str]:
        """The heartbeat's look at the backups kept: a cheap check (sizes, times) of each, and
        a full verify of one that looks changed. Problems are warnings at once, and an event
        the first time, not something found at the next restart."""
        now_broken: Dict[str, str] = {}
        good, bad = backup.scan(self.job)
        for b in good:
            if backup.looks_unchanged(self.job, b) is None:
                continue
            problem = self.broken.get(b.name) or backup.verify(self.job, b)
            if problem is not None:
                now_broken[b.name] = problem
        for u in bad:
            now_broken[u.name] = u.problem
        for name in sorted(set(now_broken) - set(self.broken)):
            self.known_good.discard(name)
            self.book.event("backup-not-verified", name=name, problem=now_broken[name])
        self.broken = now_broken
        return [f"backup {name} does not verify: {why}" for name, why in sorted(now_broken.items())]

    # -- at the end -----------------------------------------------------------------------

    def finish(self, wait: Wait) -> None:
        """After the workload stopped: wait for a running copy, then back up what it left
        (a checkpoint announced since the last backup, or a changed quiet folder)."""
        self.wait_idle(wait)
        self.progress.poll()
        if self.progress.checkpoint_seq > self.backed_seq:
            self._start_announced()
        elif self._start_quiet_folder(settle=False) != "started":  # the writer has exited
            return
        self.wait_idle(wait)

    def wait_idle(self, wait: Wait) -> None:
        """A backup being copied lands (or fails) before this returns: `wait` (the monitor
        loop's, which ticks) for at most backup.wait_s, then the copy is killed and failed."""
        if self.copier is None:
            return

        def landed() -> bool:
            self._poll_copier()
            return self.copier is None

        if not wait(landed, self.plan.backup_wait_s) and self.copier is not None:
            self.copier.kill()
            self._poll_copier(wait=True)

    def summary(self) -> dict:
        return {"last": self.last["name"] if self.last else None,
                "last_step": self.last["step"] if self.last else None,
                "in_progress": self.copier is not None, "error": self.last_error}
