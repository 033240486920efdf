"""One connection per host for the dashboard, opened once and reused by every poll; calls to
one host take turns (a paramiko connection opened lazily is not for two threads at once)."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from typing import Dict, Iterator, Tuple

from launcher.backends import reaches_host
from launcher.transport.agent_client import AgentClient
from launcher.errors import TetherError, UsageError
from launcher.transport.connect import STATUS_RETRY_S, host_for_record
from launcher.registry import JobRecord
from launcher.transport.host import Host
from launcher.settings import Places


def host_key(rec: JobRecord) -> str:
    return json.dumps(rec.endpoint, sort_keys=True)


class HostPool:
    def __init__(self, places: Places) -> None:
        self.places = places
        self._hosts: Dict[str, Tuple[Host, threading.Lock]] = {}
        self._guard = threading.Lock()
        self._closed = False

    def _entry(self, rec: JobRecord) -> Tuple[Host, threading.Lock]:
        with self._guard:
            if self._closed:  # a poll that outlived the dashboard opens nothing new
                raise UsageError("the dashboard has stopped", "start tether ui again")
            key = host_key(rec)
            if key not in self._hosts:
                self._hosts[key] = (host_for_record(rec, self.places, max_retry_s=STATUS_RETRY_S),
                                    threading.Lock())
            return self._hosts[key]

    @contextmanager
    def host(self, rec: JobRecord) -> Iterator[Host]:
        if not reaches_host(rec):  # the pool holds SSH connections to agents' hosts only
            raise UsageError(f"job {rec.id} has no host to reach from here", "see its notebook or kernel")
        host, lock = self._entry(rec)
        with lock:
            try:
                yield host
            except TetherError:
                host.close()  # reopened on the next call
                raise

    @contextmanager
    def client(self, rec: JobRecord) -> Iterator[AgentClient]:
        with self.host(rec) as host:
            yield AgentClient(host, rec.python, rec.runtime_dir)

    def close(self) -> None:
        with self._guard:
            self._closed = True
            for host, _ in self._hosts.values():
                host.close()
            self._hosts.clear()
