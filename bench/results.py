"""bench/RESULTS.md, one section at a time: a benchmark run alone replaces its own section and
leaves the others as they are."""

from __future__ import annotations

import re
from pathlib import Path

PATH = Path(__file__).resolve().parent / "RESULTS.md"


def splice(title: str, lines: list) -> None:
    text = PATH.read_text() if PATH.exists() else "# Benchmark results\n"
    section = "\n".join(lines)
    pattern = re.compile(rf"{re.escape(title)}\n.*?(?=\n## |\Z)", re.S)
    text = pattern.sub(lambda _: section.rstrip("\n"), text) if pattern.search(text) else \
        text.rstrip("\n") + "\n\n" + section
    PATH.write_text(text.rstrip("\n") + "\n")
