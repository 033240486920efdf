"""A lock on something the whole machine shares (a fixed port, a system user), held across
pytest workers and across checkouts running their suites at once: a test waits its turn."""

from __future__ import annotations

import contextlib
import fcntl
import os
from typing import Iterator


@contextlib.contextmanager
def machine_lock(name: str) -> Iterator[None]:
    path = f"/tmp/tether-test-{name}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released by the kernel if the holder dies
        yield
    finally:
        os.close(fd)
