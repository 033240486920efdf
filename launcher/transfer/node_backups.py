"""Which backup to bring from each node of a multi-node job: the same step from every node
(each node holds its own ZeRO shards of a checkpoint; shards of different steps do not make
one), each node's newest verified copy of it. The listings come from the hosts: names have
been checked by BackupInfo.list_from_json; steps and flags are only compared here."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from agent.paths import backup_order, backup_step, is_backup_name
from agent.protocol import BackupInfo

from launcher.errors import NoBackupError, NotFoundError
from launcher.transfer.pull import PullResult


def node_folder(dest: Path, k: int) -> Path:
    """Node k's part of a pull of every node (k is an int from our own loop, never the host's)."""
    return dest / f"node-{int(k)}"


def _verified_steps(items: Sequence[BackupInfo]) -> set:
    return {b.step for b in items if b.verified is True and type(b.step) is int}


def common_step(listings: Sequence[Sequence[BackupInfo]], which: str) -> int:
    """'latest': the newest step with a verified backup on every node; a name: that backup's
    step (the name is one node's; the others hold the same step under their own names)."""
    if which == "latest":
        steps = set.intersection(*(_verified_steps(items) for items in listings))
        if not steps:
            raise NoBackupError("no step has a verified backup on every node",
                                "see `tether backups JOB --node K` for each node")
        return max(steps)
    for items in listings:
        for b in items:
            if b.name == which:
                if type(b.step) is not int:
                    raise NoBackupError(f"backup {which} has no step to find on the other nodes",
                                        "pull it from its node alone with --node K")
                return b.step
    raise NotFoundError(f"no node has a backup named {which!r}", "see `tether backups JOB --node K`")


def pick_per_node(listings: Sequence[Sequence[BackupInfo]], which: str) -> List[str]:
    """Each node's backup name of the common step (its newest verified one)."""
    step = common_step(listings, which)
    names = []
    for k, items in enumerate(listings):
        held = [b for b in items if b.verified is True and type(b.step) is int and b.step == step]
        if not held:
            raise NoBackupError(f"node {k} has no verified backup of step {step}",
                                f"see `tether backups JOB --node {k}`")
        names.append(held[-1].name)
    return names


def _stepped(names: Sequence[object]) -> Dict[str, int]:
    """{name: step} of the backup names that carry a step."""
    found: Dict[str, int] = {}
    for n in names:
        step = backup_step(n) if isinstance(n, str) and is_backup_name(n) else None
        if isinstance(n, str) and step is not None:
            found[n] = step
    return found


def common_mirrored(listings: Sequence[Sequence[object]], where: str) -> Tuple[int, List[str]]:
    """`resume --on` of a multi-node job: the newest step that every node has in its mirror
    (node K's list: the backup names of node K there, on this laptop or the Hub), and each
    node's newest backup of that step. The names came from hosts or the Hub: one that is not
    a backup's, or carries no step, counts for nothing. A step one node lacks is never picked."""
    held = [_stepped(names) for names in listings]
    steps = set.intersection(*(set(h.values()) for h in held)) if held else set()
    if not steps:
        raise NoBackupError(f"no step has a backup of every node in {where}",
                            "set backup.mirror (laptop or hf://...) and let every node's backups reach it while "
                            "the job runs")
    step = max(steps)
    return step, [max((n for n, s in h.items() if s == step), key=backup_order) for h in held]


def merged(dest: Path, results: Sequence[PullResult]) -> PullResult:
    """Every node's pull as one, each path under its node-k/ folder."""
    out = PullResult(dest=dest)
    for k, r in enumerate(results):
        out.pulled += [f"node-{k}/{p}" for p in r.pulled]
        out.unchanged += [f"node-{k}/{p}" for p in r.unchanged]
        out.refused += [f"node-{k}: {p}" for p in r.refused]
        out.bytes += r.bytes
    return out
