"""What sync leaves out, and why: each exclusion names the rule that made it (a built-in one, or
a .gitignore/.tetherignore line), so `launch --dry-run` can list them and `tether status` can
say why a file the job missed never left the laptop. Git's rules: a deeper .gitignore beats a
shallower one, and within a file the last matching line wins (`!` lines re-include)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import pathspec

from launcher.transfer import PULLED_MARKER

ALWAYS_SKIPPED_DIRS = {".git", ".hg", ".svn", "__pycache__", ".venv", "venv", ".mypy_cache",
                       ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints", ".tether"}


@dataclass(frozen=True)
class Rule:
    source: str   # ".gitignore", "data/.gitignore", ".tetherignore", or "built-in"
    line: int     # 1-based; 0 for built-in rules
    text: str

    def __str__(self) -> str:
        return f"built-in: {self.text}" if self.source == "built-in" else f"{self.source} line {self.line}: {self.text}"


def builtin(text: str) -> Rule:
    return Rule("built-in", 0, text)


class _IgnoreFile:
    """One .gitignore (or .tetherignore), applying below its folder."""

    def __init__(self, base: str, path: Path, label: str) -> None:
        self.base = base
        self.patterns: List[Tuple[object, Rule]] = []
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            pattern = pathspec.GitIgnoreSpec.from_lines([line]).patterns
            if pattern and pattern[0].include is not None:
                self.patterns.append((pattern[0], Rule(label, n, line.strip())))

    def decide(self, rel: str, is_dir: bool) -> Optional[Tuple[bool, Rule]]:
        """(excluded?, by which line) from the last line that matches, or None."""
        if self.base and not rel.startswith(self.base + "/"):
            return None
        sub = rel[len(self.base) + 1:] if self.base else rel
        decision = None
        for pattern, rule in self.patterns:
            if pattern.match_file(sub + ("/" if is_dir else "")):  # type: ignore[attr-defined]
                decision = (bool(pattern.include), rule)  # type: ignore[attr-defined]
        return decision


class Ignores:
    """The rules in force while walking a workdir top-down; add each folder's .gitignore as it
    is entered."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.files: List[_IgnoreFile] = []
        for name in (".gitignore", ".tetherignore"):
            if (workdir / name).is_file():
                self.files.append(_IgnoreFile("", workdir / name, name))

    def enter(self, rel_dir: str) -> None:
        path = self.workdir / rel_dir / ".gitignore"
        if rel_dir and path.is_file():
            self.files.append(_IgnoreFile(rel_dir, path, f"{rel_dir}/.gitignore"))

    def why(self, rel: str, is_dir: bool) -> Optional[Rule]:
        """The rule that leaves rel out, or None when it is sent (as far as this folder goes)."""
        name = rel.rsplit("/", 1)[-1]
        if is_dir:
            if name in ALWAYS_SKIPPED_DIRS:
                return builtin(f"{name}/ is never sent")
            folder = self.workdir / rel
            if (folder / "pyvenv.cfg").is_file() or (folder / "conda-meta").is_dir():
                return builtin(f"{name}/ is a virtualenv")
            if (folder / PULLED_MARKER).is_file():
                return builtin(f"{name}/ is where `tether pull` put results")
        elif name == ".env" or name.startswith(".env."):
            return builtin(".env files are never sent (secrets)")
        elif name.endswith(".pyc"):
            return builtin("*.pyc")
        verdict = None
        for f in self.files:  # shallower first: a deeper .gitignore has the last word
            decided = f.decide(rel, is_dir)
            if decided is not None:
                verdict = decided
        return verdict[1] if verdict and verdict[0] else None


def why_left_out(workdir: Path, rel: str) -> Optional[Tuple[str, Rule]]:
    """Why a path of the workdir was not sent: (what the rule left out: the path itself, or a
    folder above it, as `folder/`; the rule), or None when it is sent."""
    ignores = Ignores(workdir)
    parts = rel.split("/")
    for i in range(1, len(parts)):
        folder = "/".join(parts[:i])
        rule = ignores.why(folder, True)
        if rule is not None:
            return folder + "/", rule
        ignores.enter(folder)
    is_dir = (workdir / rel).is_dir()
    rule = ignores.why(rel, is_dir)
    return (rel + ("/" if is_dir else ""), rule) if rule is not None else None
