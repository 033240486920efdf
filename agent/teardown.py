"""A rented host destroys itself once its job has ended and the results are safe, so a
sleeping laptop leaves nothing billing. The request (method, URL, headers with an
instance-scoped key) came from the launcher in a 0600 file; it is sent with urllib."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from typing import Callable, Optional

from .book import StatusBook
from .clock import REAL, Clock
from .files import read_json, read_json_object
from .paths import JobDir


def send(job: JobDir, book: StatusBook, tries: int = 3) -> Optional[int]:
    req = read_json(job.teardown)
    if not req:
        return None
    status = None
    for attempt in range(tries):
        try:
            r = urllib.request.Request(req["url"], method=req["method"], headers=req.get("headers") or {})
            with urllib.request.urlopen(r, timeout=30) as resp:
                status = resp.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (urllib.error.URLError, OSError) as exc:
            book.event("teardown-failed", error=str(exc)[:200], attempt=attempt + 1)  # never the headers
            time.sleep(2 * (attempt + 1))
            continue
        if status < 500 and status != 429:
            break
        time.sleep(2 * (attempt + 1))
    book.event("teardown-sent", method=req["method"], status=status)
    if status is not None and (status < 400 or status == 404):
        os.unlink(job.teardown)
    return status


def wait_until_safe_then_send(job: JobDir, book: StatusBook, heartbeat: Callable[[], None],
                              every_s: float, wait_s: float, should_quit: Callable[[], bool],
                              unsaved: Callable[[], str], poll_s: float = 1.0, clock: Clock = REAL) -> None:
    """After the end: keep heartbeating until the results are marked safe (pulled by the
    launcher, or mirrored off the host), then send the teardown. Never longer than wait_s
    (autodown.wait_min, within limits.max_usd): then the host goes anyway, and the events and
    the state say what was not saved. Ends early if the launcher destroyed the host itself
    (the teardown file is gone) or the agent is told to go (SIGTERM)."""
    book.event("waiting-for-results-safe", wait_s=round(wait_s),
               reason="outputs must be pulled or mirrored before the host goes")
    last = 0.0
    end = clock.monotonic() + wait_s
    while job.teardown.exists() and not should_quit():
        info, _ = read_json_object(job.results_safe)
        if info is not None:
            book.event("results-safe", how=str(info.get("how"))[:200])
            send(job, book)
            return
        if clock.monotonic() >= end:
            lost = unsaved()
            book.event("autodown-unsaved", waited_s=round(wait_s), unsaved=lost)
            book.doc["reason"] = f"{book.doc.get('reason') or ''}; autodown after {wait_s / 60:.0f} min: {lost}"
            book.save()
            send(job, book)
            return
        if clock.monotonic() - last >= every_s:
            heartbeat()
            last = clock.monotonic()
        clock.sleep(poll_s)
