"""`tether pull JOB`: its body, without typer. Users pull after every checkpoint, and the Typer
app (typer, click, pydantic) costs a fifth of a second to load before the host is asked; a pull
of small files waits for exactly that. cli/results.py's command calls this too; lean/verbs.py
reads `pull JOB [--to DIR] [--path P]` for it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

from launcher.errors import UsageError
from launcher.lean.session import Session
from launcher.text import plain

if TYPE_CHECKING:
    from rich.console import Console

    from launcher.registry import JobRecord


def pull(s: Session, job: str, to: Optional[str] = None, path: Optional[List[str]] = None,
         backup: Optional[str] = None, node: Optional[int] = None, all_nodes: bool = False) -> int:
    """Bring the job's outputs and listed artifacts (or one backup) into `to`, verified by sha256."""
    from launcher import early

    try:   # even when the job is not found: what the next same pull starts early is then nothing
        handle = on_node(s.handle(job), node, all_nodes, "pull")
        rec = handle.record
        dest = Path(to) if to is not None else Path(f"{rec.name}-{rec.id}")
        asked = list(path or rec.artifacts or ["outputs/"])
        if all_nodes:
            result = (handle.pull_backup_all(backup, dest, s.console) if backup
                      else handle.pull_all(dest, asked, s.console))
        else:
            result = handle.pull_backup(backup, dest, s.console) if backup else handle.pull(dest, asked, s.console)
    finally:
        early.keep_started()  # its host session, started first by the next same pull
    if not result.pulled and not result.unchanged and not result.refused and backup is None:
        _say_what_is_there(s.console, rec, asked, handle.inventory())
        return 0
    s.console.print(f"pulled {len(result.pulled)} file(s) into {plain(str(dest), 1000)}"
                    + (f", {len(result.unchanged)} already there" if result.unchanged else ""), markup=False)
    for name in result.pulled:      # names the host gave: no escape sequence reaches the terminal
        s.console.print(f"  {plain(name, 1000)}", markup=False)
    for item in result.refused:
        s.console.print(f"  not pulled: {plain(item, 1000)}", markup=False)
    return 0


def on_node(handle, node: Optional[int], all_nodes: bool, verb: str):
    """The handle a command acts on: the job's, or node K's of a multi-node job (as `logs
    --node`); --all-nodes keeps the job's handle, which then acts on each node."""
    if node is None and not all_nodes:
        return handle
    rec = handle.record
    flag = "--all-nodes" if all_nodes else "--node"
    if not rec.nodes:
        raise UsageError(f"job {rec.id} runs on one host: {flag} is for a multi-node job", f"tether {verb} {rec.id}")
    if node is not None and all_nodes:
        raise UsageError("--node and --all-nodes do not go together", "give one of them")
    return handle if all_nodes else handle.node(node)


def _say_what_is_there(console: Console, rec: JobRecord, asked: List[str], held: object) -> None:
    """A pull that found nothing: what the job folder does hold, and how to bring it."""
    from launcher.text import human_bytes

    console.print(f"pulled 0 files: nothing in {plain(', '.join(asked), 1000)} on the host", markup=False)
    if not isinstance(held, dict):
        return
    found = []
    for name, info in (held.get("folders") or {}).items():
        if isinstance(info, dict) and isinstance(info.get("files"), int) and info["files"] > 0:
            found.append((name, f"{info['files']} file(s), {human_bytes(info.get('bytes') or 0)}"))
    for f in held.get("written_in_code") or []:
        if isinstance(f, dict) and isinstance(f.get("path"), str):
            found.append((f["path"], f"{human_bytes(f.get('bytes') or 0)}, written by the script in its folder"))
    if not found:
        console.print("the job folder holds no outputs, checkpoints or files the script wrote", markup=False)
        return
    console.print("the job folder holds:", markup=False)
    for name, what in found:
        console.print(f"  {plain(name, 300)}  ({what})", markup=False)
    wanted = [plain(n, 300) for n, _ in found if not n.startswith("backups/")]
    if wanted:
        console.print(f"to bring them: tether pull {rec.id} " + " ".join(f"--path {n}" for n in wanted), markup=False)
        console.print(f"and for next time, in the spec: artifacts: [{', '.join(wanted)}]", markup=False)
    if any(n == "backups/" for n, _ in found):
        console.print(f"or the newest backup: tether pull {rec.id} --backup latest", markup=False)


