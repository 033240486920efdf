"""A kind of job is one handle; the commands ask the handle, never which kind it is.
(submitit: one Job subclass per backend.) A verb a kind cannot do raises Unsupported, one
line said by the handle itself."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Dict, List, Mapping, Optional, Protocol, Sequence


from agent.protocol import BackupInfo, StatusAnswer

from launcher.errors import ExitCode, TetherError
from launcher.jobs.view import JobView
from launcher.registry import JobRecord, Registry
from launcher.settings import Places

if TYPE_CHECKING:  # imported where used: a status read needs neither
    from rich.console import Console

    from launcher.transfer.pull import PullResult


class Unsupported(TetherError):
    """This kind of job cannot do that verb (said in one line, with what to do instead)."""

    exit_code = ExitCode.BAD_SPEC


@dataclass(frozen=True)
class Context:
    """What a handle may use: where tether keeps things, the registry, the environment."""

    places: Places
    registry: Registry
    environ: Mapping[str, str]


@dataclass(frozen=True)
class StopAsked:
    message: str
    wait: bool    # False: nothing to wait for (it has stopped, or cannot be watched)


class JobHandle(Protocol):
    record: JobRecord
    reaches_host: bool   # an agent on a host tether connects to: reconcile acts on these only

    def label(self) -> str: ...                        # where it runs, in words
    def logs(self, tail: int, follow: bool, which: str, out: BinaryIO) -> None: ...
    def pull(self, dest: Path, paths: Optional[Sequence[str]], console: Console) -> "PullResult": ...
    def pull_backup(self, which: str, dest: Path, console: Console) -> "PullResult": ...
    def inventory(self) -> dict: ...
    def backups(self, check: bool = True) -> List[BackupInfo]: ...
    def stop(self, reason: str) -> StopAsked: ...
    def wait_stopped(self, timeout: float, on_answer: Optional[Callable[[StatusAnswer], None]] = None) -> StatusAnswer: ...
    def resume(self) -> str: ...
    def recent_progress(self, max_rows: int) -> list: ...
    def history(self, files: Sequence[str], max_rows: Optional[int] = None, rounds: int = 8): ...
    def before_move(self, console: Console) -> None: ...
    def shell_argv(self, cmd: Optional[List[str]]) -> List[str]: ...

    @classmethod
    def observe_all(cls, handles: List["JobHandle"], recent: int = 0) -> Dict[str, JobView]: ...


class CannotReach:
    """The verbs a job no host tether connects to cannot do; why is the subclass's `why`."""

    reaches_host = False
    record: JobRecord

    def why(self) -> Unsupported:
        raise NotImplementedError

    def logs(self, tail: int, follow: bool, which: str, out: BinaryIO) -> None:
        raise self.why()

    def pull(self, dest: Path, paths: Optional[Sequence[str]], console: Console) -> "PullResult":
        raise self.why()

    def pull_backup(self, which: str, dest: Path, console: Console) -> "PullResult":
        raise self.why()

    def inventory(self) -> dict:
        raise self.why()

    def backups(self, check: bool = True) -> List[BackupInfo]:
        raise self.why()

    def stop(self, reason: str) -> StopAsked:
        raise self.why()

    def wait_stopped(self, timeout: float, on_answer: Optional[Callable[[StatusAnswer], None]] = None) -> StatusAnswer:
        raise self.why()

    def resume(self) -> str:
        raise self.why()

    def shell_argv(self, cmd: Optional[List[str]]) -> List[str]:
        raise self.why()

    def recent_progress(self, max_rows: int) -> list:
        return []  # nothing tether can read of its progress lines

    def history(self, files: Sequence[str], max_rows: Optional[int] = None, rounds: int = 8):
        raise self.why()
