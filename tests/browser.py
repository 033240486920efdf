"""Headless Chromium (Debian's package) driven by playwright: its own browser download is
never used. Closed on the way out, so no test leaves a browser running."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextmanager
def chromium(width: int = 1400, height: int = 900) -> Iterator[object]:
    """A fresh browser context (its own cookies); yields a page."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "chromium is required: .ci/run installs it"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            yield context.new_page()
        finally:
            browser.close()
