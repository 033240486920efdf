"""The local job registry: SQLite in tether's data folder, WAL mode, safe for two tether
processes at once. It is a cache of where jobs are; the host's state.json is the truth."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from launcher.errors import NotFoundError, UsageError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    project TEXT NOT NULL,
    spec_hash TEXT NOT NULL,
    provider TEXT NOT NULL,
    endpoint TEXT NOT NULL,        -- JSON: how to reach the host again
    instance TEXT,                 -- JSON: the provider's instance, for rented hosts
    remote_root TEXT NOT NULL,
    job_dir TEXT NOT NULL,
    python TEXT NOT NULL,
    runtime_dir TEXT NOT NULL,
    artifacts TEXT NOT NULL,       -- JSON list
    created REAL NOT NULL,
    last_state TEXT NOT NULL,
    last_seen REAL,
    price_per_hour REAL,
    spend REAL,
    autodown INTEGER NOT NULL DEFAULT 0,
    spec TEXT,                     -- JSON: the resolved spec (never secrets), to resume elsewhere
    workdir TEXT,                  -- the laptop folder that was synced
    last_step INTEGER,             -- the step last seen (shown while the host does not answer)
    final TEXT,                    -- JSON: an ended job's last answer, not asked for again
    nodes TEXT                     -- JSON: a multi-node job's hosts, node 0 first (else NULL)
);
CREATE INDEX IF NOT EXISTS jobs_name ON jobs(name);
"""

# Columns added after the first release: (name, SQL type) added to older registries.
_ADDED = (("autodown", "INTEGER NOT NULL DEFAULT 0"), ("spec", "TEXT"), ("workdir", "TEXT"), ("last_step", "INTEGER"),
          ("final", "TEXT"), ("nodes", "TEXT"))


@dataclass(frozen=True)
class JobRecord:
    id: str
    name: str
    project: str
    spec_hash: str
    provider: str
    endpoint: Dict[str, Any]
    remote_root: str
    job_dir: str
    python: str
    runtime_dir: str
    artifacts: List[str] = field(default_factory=list)
    instance: Optional[Dict[str, Any]] = None
    created: float = 0.0
    last_state: str = "PENDING"
    last_seen: Optional[float] = None
    price_per_hour: Optional[float] = None
    spend: Optional[float] = None
    autodown: bool = False
    spec: Optional[Dict[str, Any]] = None
    workdir: Optional[str] = None
    last_step: Optional[int] = None
    final: Optional[Dict[str, Any]] = None   # {"answer": the status answer, "at": when it was read}
    nodes: Optional[List[Dict[str, Any]]] = None   # per node: endpoint, remote_root, job_dir, python, runtime_dir

    @property
    def kind(self) -> str:
        """Which handle serves it (launcher.backends): agent, kaggle or notebook."""
        if self.nodes:
            return "nodes"
        return {"kaggle": "kaggle", "notebook": "notebook"}.get(self.endpoint.get("kind"), "agent")

    @property
    def mirror(self) -> Optional[str]:
        return ((self.spec or {}).get("backup") or {}).get("mirror")

    @property
    def kept_answer(self) -> Optional[Dict[str, Any]]:
        """The ended job's last answer, when one is kept: a read of many jobs shows it without
        asking the host (launcher.backends.observe; launcher.early agrees)."""
        if self.last_state in _ENDED and isinstance(self.final, dict) and isinstance(self.final.get("answer"), dict):
            return self.final
        return None

    @property
    def instance_alive(self) -> bool:
        """A rented instance that tether has not destroyed (as far as it knows)."""
        return bool(self.instance) and not (self.instance or {}).get("destroyed_at")


_JSON_FIELDS = ("endpoint", "instance", "artifacts", "spec", "final", "nodes")
_ENDED = ("SUCCEEDED", "FAILED", "STOPPED")


class Registry:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), timeout=30, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA busy_timeout=30000")
        self.db.executescript(_SCHEMA)
        have = {row["name"] for row in self.db.execute("PRAGMA table_info(jobs)")}
        for name, kind in _ADDED:
            if name not in have:
                self.db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")

    def add(self, rec: JobRecord) -> None:
        row = asdict(rec)
        for k in _JSON_FIELDS:
            row[k] = json.dumps(row[k]) if row[k] is not None else None
        cols = ", ".join(row)
        self.db.execute(f"INSERT INTO jobs ({cols}) VALUES ({', '.join('?' * len(row))})", list(row.values()))

    def remove(self, job_id: str) -> None:
        """A launch undone before its job existed anywhere."""
        self.db.execute("DELETE FROM jobs WHERE id=?", (job_id,))

    def set_state(self, job_id: str, state: str, step: Optional[int] = None) -> None:
        """What the host last said: kept to show while it does not answer. A job that is not
        ended (resumed, relaunched) loses its kept final answer."""
        if state not in _ENDED:
            self.db.execute("UPDATE jobs SET final=NULL WHERE id=?", (job_id,))
        if step is None:
            self.db.execute("UPDATE jobs SET last_state=?, last_seen=? WHERE id=?", (state, time.time(), job_id))
        else:
            self.db.execute("UPDATE jobs SET last_state=?, last_seen=?, last_step=? WHERE id=?",
                            (state, time.time(), step, job_id))

    def set_final(self, job_id: str, answer: Dict[str, Any]) -> None:
        """An ended job's last answer, shown from here from now on (`tether jobs` does not
        ask its host again); `tether status JOB` still asks."""
        self.db.execute("UPDATE jobs SET final=? WHERE id=? AND last_state IN (?, ?, ?)",
                        (json.dumps({"answer": answer, "at": time.time()}), job_id, *_ENDED))

    def rehome(self, job_id: str, **fields: Any) -> None:
        """The job moved to another host (resume --on): where to reach it from now on, and the
        spec it runs with there (its host part names the new hosts)."""
        allowed = {"provider", "endpoint", "instance", "remote_root", "job_dir", "python", "runtime_dir",
                   "price_per_hour", "autodown", "nodes", "spec"}
        cols = [k for k in fields if k in allowed]
        self.db.execute("UPDATE jobs SET final=NULL WHERE id=?", (job_id,))
        values = [json.dumps(fields[k]) if k in _JSON_FIELDS and fields[k] is not None else fields[k] for k in cols]
        self.db.execute(f"UPDATE jobs SET {', '.join(c + '=?' for c in cols)} WHERE id=?", values + [job_id])

    def set_instance(self, job_id: str, instance: Optional[Dict[str, Any]]) -> None:
        self.db.execute("UPDATE jobs SET instance=? WHERE id=?",
                        (json.dumps(instance) if instance is not None else None, job_id))

    def all(self) -> List[JobRecord]:
        return [self._rec(r) for r in self.db.execute("SELECT * FROM jobs ORDER BY created DESC")]

    def resolve(self, ref: str) -> JobRecord:
        """An id, a unique id prefix, or a job name (the newest job of that name)."""
        rows = self.db.execute("SELECT * FROM jobs WHERE id=?", (ref,)).fetchall()
        if not rows:
            rows = self.db.execute("SELECT * FROM jobs WHERE id LIKE ? ESCAPE '\\'",
                                   (ref.replace("%", r"\%").replace("_", r"\_") + "%",)).fetchall()
            if len(rows) > 1:
                ids = ", ".join(sorted(r["id"] for r in rows)[:5])
                raise UsageError(f"job {ref!r} is ambiguous: {ids}", "give more of the id")
        if not rows:
            rows = self.db.execute("SELECT * FROM jobs WHERE name=? ORDER BY created DESC LIMIT 1",
                                   (ref,)).fetchall()
        if not rows:
            raise NotFoundError(f"no job {ref!r}", "see `tether jobs` for ids and names")
        return self._rec(rows[0])

    @staticmethod
    def _rec(row: sqlite3.Row) -> JobRecord:
        d = dict(row)
        for k in _JSON_FIELDS:
            d[k] = json.loads(d[k]) if d[k] is not None else None
        d["artifacts"] = d["artifacts"] or []
        d["autodown"] = bool(d.get("autodown"))
        return JobRecord(**d)

    def close(self) -> None:
        self.db.close()
