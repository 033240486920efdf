"""Every name in the host's tether root. Nothing else spells these paths.

    <root>/runtime/<version>/   shipped agent + workloads
    <root>/code/<project>/      synced workdir, shared by that project's jobs
    <root>/setup/<key>.done     a setup command that already ran with these inputs
    <root>/jobs/<job-id>/       one job (see JobDir)
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from typing import Optional, Tuple, Union

# Every pattern here is matched with fullmatch: `$` would let a trailing newline through.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# A backup folder: <UTC stamp>[-step<N>][-<n> for a second one in the same second]
BACKUP_NAME = re.compile(r"(\d{8}T\d{6})(?:-step(\d{1,18}))?(?:-(\d{1,9}))?")  # bounded: a file name, an int
BACKUP_MANIFEST = "MANIFEST.json"


def safe_relpath(name: str) -> str:
    """A relative POSIX path with no '..', or ValueError: nothing lands outside its folder."""
    p = PurePosixPath(name)
    if not name or p.is_absolute() or ".." in p.parts or "\\" in name or "\x00" in name:
        raise ValueError(f"refusing unsafe path {name!r}")
    rel = str(p)
    if rel in (".", ""):
        raise ValueError(f"refusing empty path {name!r}")
    return rel


def is_inside(path: Path, top: Path) -> bool:
    """True if path, with every symlink resolved, is top or below it."""
    real, real_top = os.path.realpath(path), os.path.realpath(top)
    return os.path.commonpath([real, real_top]) == real_top


def check_name(kind: str, value: str) -> str:
    """Job ids, project names and versions become directory names: keep them plain."""
    if not isinstance(value, str) or not _SAFE_NAME.fullmatch(value) or value in (".", ".."):
        raise ValueError(f"{kind} {value!r} must be letters, digits, '.', '_' or '-'")
    return value


def is_backup_name(value: object) -> bool:
    """A backup's identity is its folder name; anything else a host or a manifest says is data."""
    return isinstance(value, str) and BACKUP_NAME.fullmatch(value) is not None


def backup_order(name: str) -> Tuple[str, int, int]:
    """Sort key for backup names, oldest first: the stamp, then the step, then the suffix."""
    m = BACKUP_NAME.fullmatch(name)
    if not m:
        return ("", -1, -1)
    return (m.group(1), int(m.group(2) or -1), int(m.group(3) or 1))


def backup_step(name: str) -> Optional[int]:
    """The step a backup's name carries (None: not a backup name, or one without a step)."""
    m = BACKUP_NAME.fullmatch(name) if isinstance(name, str) else None
    return int(m.group(2)) if m and m.group(2) is not None else None


_NODE_PREFIX = re.compile(r"node-(0|[1-9][0-9]{0,3})/")


def node_prefix(node: Optional[dict]) -> str:
    """Where a node's backups live in an hf:// mirror: node-K/ for node K of a multi-node job
    (node 0 too, so every node's are found alike); "" (the repo's top level, as always) for a
    one-host job."""
    if not node or int(node.get("count") or 1) <= 1:
        return ""
    return f"node-{int(node['rank'])}/"


def is_node_prefix(value: object) -> bool:
    """"" or node-K/: anything else on a request is refused, never joined into a repo path."""
    return value == "" or (isinstance(value, str) and _NODE_PREFIX.fullmatch(value) is not None)


def _below(real: str, real_top: str) -> bool:
    return real.startswith(real_top.rstrip(os.sep) + os.sep)


def _resolved_folder(path: Union[str, Path]) -> str:
    """path with the symlinks of its folder resolved, its own last part kept as it is (a link
    there is the thing to delete, not where it points)."""
    absolute = os.path.abspath(path)
    return os.path.join(os.path.realpath(os.path.dirname(absolute)), os.path.basename(absolute))


def is_strictly_inside(path: Union[str, Path], parent: Union[str, Path]) -> bool:
    """True if path lies below parent (both resolved as above), never parent itself."""
    if os.path.basename(os.path.abspath(path)) in ("", ".", ".."):
        return False
    return _below(_resolved_folder(path), os.path.realpath(parent))


def remove_inside(path: Union[str, Path], parent: Union[str, Path],
                  anchor: Optional[Union[str, Path]] = None) -> bool:
    """Deletes path (a file, a folder tree, or a symlink as a link, never followed) only if it
    lies strictly inside parent, and parent (resolved) inside anchor when given: a name from a
    host or a workload can never steer a delete elsewhere. ValueError if it would; False when
    there was nothing to delete."""
    if not is_strictly_inside(path, parent):
        raise ValueError(f"refusing to delete {str(path)!r}: it is not inside {str(parent)!r}")
    if anchor is not None:
        real_anchor, real_parent = os.path.realpath(anchor), os.path.realpath(parent)
        if real_parent != real_anchor and not _below(real_parent, real_anchor):
            raise ValueError(f"refusing to delete under {str(parent)!r}: it resolves outside {str(anchor)!r}")
    target = _resolved_folder(path)
    try:
        if os.path.isdir(target) and not os.path.islink(target):
            import shutil  # here: `agent status` loads this module and never deletes

            shutil.rmtree(target)  # fd-based on Linux: links inside are removed, not followed
        else:
            os.unlink(target)
    except FileNotFoundError:
        return False
    return True


class Root:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def runtime(self, version: str) -> Path:
        return self.path / "runtime" / check_name("runtime version", version)

    def code(self, project: str) -> Path:
        return self.path / "code" / check_name("project", project)

    def code_manifest_cache(self, project: str) -> Path:
        return self.path / "code" / f".{check_name('project', project)}.hashes.json"

    def code_lock(self, project: str) -> Path:
        """Held from manifest to snapshot by a launch: one launch of a project at a time."""
        return self.path / "code" / f".{check_name('project', project)}.lock"

    def code_rsync_temp(self, project: str) -> Path:
        """rsync's --temp-dir for the project (outside the synced folder, on the same disk)."""
        return self.path / "code" / f".{check_name('project', project)}.rsync-tmp"

    def clean_rsync_temp(self, project: str) -> None:
        remove_inside(self.code_rsync_temp(project), self.path / "code")
        self.code_rsync_temp(project).mkdir(parents=True, exist_ok=True)

    def setup_marker(self, key: str) -> Path:
        return self.path / "setup" / f"{check_name('setup key', key)}.done"

    def job(self, job_id: str) -> "JobDir":
        return JobDir(self.path / "jobs" / check_name("job id", job_id))


class JobDir:
    """The files of one job. The agent is the only writer of state, heartbeat and events."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def root(self) -> Root:
        return Root(self.path.parent.parent)

    @property
    def code(self) -> Path:
        return self.path / "code"

    @property
    def code_partial(self) -> Path:
        """The snapshot while it is made (code_snapshot.py): renamed to code when whole."""
        return self.path / ".code.partial"

    @property
    def code_guard(self) -> Path:
        """Locked by whoever makes the snapshot, until code is whole or it has failed."""
        return self.path / ".code.lock"

    @property
    def code_error(self) -> Path:
        return self.path / ".code.error"

    @property
    def spec(self) -> Path:
        return self.path / "spec.json"

    @property
    def secrets(self) -> Path:
        return self.path / "secrets.json"

    @property
    def state(self) -> Path:
        return self.path / "state.json"

    @property
    def heartbeat(self) -> Path:
        return self.path / "heartbeat.json"

    @property
    def progress(self) -> Path:
        return self.path / "progress.jsonl"

    @property
    def heartbeats(self) -> Path:
        """One compact resource sample per heartbeat, appended (size-capped: agent.history)."""
        return self.path / "heartbeats.jsonl"

    @property
    def progress_summary(self) -> Path:
        """progress.jsonl thinned to its shape (min/max kept), with the offset it covers:
        written by the agent as lines arrive, so a long history is read in milliseconds."""
        return self.path / "progress-summary.json"

    @property
    def events(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def workload_log(self) -> Path:
        return self.logs / "workload.log"

    @property
    def setup_log(self) -> Path:
        return self.logs / "setup.log"

    def stacks(self, attempt: int) -> Path:
        """The Python stacks taken when an attempt hung (`tether logs JOB --file stacks`)."""
        return self.logs / f"stacks-attempt{attempt}.txt"

    def newest_stacks(self) -> Path:
        found = [(int(m.group(1)), p) for p in self.logs.glob("stacks-attempt*.txt")
                 if (m := re.fullmatch(r"stacks-attempt(\d+)\.txt", p.name))]
        return max(found)[1] if found else self.stacks(0)

    @property
    def hub_mirror_log(self) -> Path:
        """What huggingface_hub says while pushing backups (backup.mirror: hf://)."""
        return self.logs / "hub-mirror.log"

    @property
    def mirror_state(self) -> Path:
        """Which backups the Hub mirror holds, as of the last push (written by MirrorKeeper)."""
        return self.path / "mirror.json"

    @property
    def agent_log(self) -> Path:
        return self.logs / "agent.log"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def backups(self) -> Path:
        return self.path / "backups"

    @property
    def outputs(self) -> Path:
        return self.path / "outputs"

    @property
    def control(self) -> Path:
        return self.path / "control"

    @property
    def stop_request(self) -> Path:
        return self.control / "stop"

    @property
    def python_shims(self) -> Path:
        """python, python3, pip, pip3: host.python's, first on the workload's PATH."""
        return self.path / "bin"

    @property
    def results_safe(self) -> Path:
        """Written once outputs and the final backup are off the host (pulled or mirrored)."""
        return self.control / "results-safe"

    @property
    def teardown(self) -> Path:
        """How the agent destroys its own rented instance (0600; it holds an instance key)."""
        return self.path / "teardown.json"

    def make_dirs(self) -> None:
        for d in (self.path, self.logs, self.checkpoints, self.backups, self.outputs, self.control):
            d.mkdir(parents=True, exist_ok=True)
