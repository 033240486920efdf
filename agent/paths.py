"""Every name in the host's tether root. Nothing else spells these paths.

    <root>/runtime/<version>/   shipped agent + workloads
    <root>/code/<project>/      synced workdir, shared by that project's jobs
    <root>/setup/<key>.done     a setup command that already ran with these inputs
    <root>/jobs/<job-id>/       one job (see JobDir)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Tuple

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# A backup folder: <UTC stamp>[-step<N>][-<n> for a second one in the same second]
BACKUP_NAME = re.compile(r"^(\d{8}T\d{6})(?:-step(\d+))?(?:-(\d+))?$")
BACKUP_MANIFEST = "MANIFEST.json"


def check_name(kind: str, value: str) -> str:
    """Job ids, project names and versions become directory names: keep them plain."""
    if not _SAFE_NAME.match(value) or value in (".", ".."):
        raise ValueError(f"{kind} {value!r} must be letters, digits, '.', '_' or '-'")
    return value


def backup_order(name: str) -> Tuple[str, int, int]:
    """Sort key for backup names, oldest first: the stamp, then the step, then the suffix."""
    m = BACKUP_NAME.match(name)
    if not m:
        return ("", -1, -1)
    return (m.group(1), int(m.group(2) or -1), int(m.group(3) or 1))


class Root:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def runtime(self, version: str) -> Path:
        return self.path / "runtime" / check_name("runtime version", version)

    def code(self, project: str) -> Path:
        return self.path / "code" / check_name("project", project)

    def code_manifest_cache(self, project: str) -> Path:
        return self.path / "code" / f".{check_name('project', project)}.hashes.json"

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
