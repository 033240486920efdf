"""Names and values both sides of the wire agree on: job states, failure classes, the file digest."""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from enum import Enum
from pathlib import Path
from typing import (Any, Dict, Iterable, List, Mapping, Optional, Tuple, Type, TypeVar, Union, get_args, get_origin,
                    get_type_hints)

# Re-exported: the laptop reads every name of the wire from this one module.
from .hashing import BackgroundHash as BackgroundHash, sha256_file as sha256_file
from .rows import HISTORY_KEYS as HISTORY_KEYS, MAX_METRICS as MAX_METRICS, downsample as downsample
from .states import PROTOCOL as PROTOCOL, FailureClass as FailureClass, JobState as JobState

# The create-job payload (laptop -> agent) is defined in payload.py and read by the launcher
# here, loaded on first use: a status or a log read on the host has no use for its classes.
_PAYLOAD_NAMES = {"PAYLOAD_VERSION", "HubFacts", "JobFacts", "JobPayload", "ProtocolMismatch", "RunSettings"}


def __getattr__(name: str) -> Any:
    if name in _PAYLOAD_NAMES:
        from . import payload

        return getattr(payload, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# A backup folder's name (agent.paths.BACKUP_NAME, repeated here so the laptop needs only this module).
BACKUP_NAME_RE = re.compile(r"(\d{8}T\d{6})(?:-step(\d{1,18}))?(?:-(\d{1,9}))?")  # bounded: a file name, an int

# The key of the hf:// mirror's Hub token among a job's secrets: the agent keeps it for itself.
HUB_MIRROR_TOKEN = "TETHER_HUB_MIRROR_TOKEN"


# `python -c BOOT RUNTIME verb args...`: runs the agent from RUNTIME with nothing ahead of it on
# sys.path. `python -m agent` would put the working directory first, where a project's own
# agent.py (or a workload's, in its job folder) would be run instead. `sys` is built in, so
# nothing can shadow it before the path is fixed.
# A runtime folder that is not there is said in one line, rather than importing whatever else
# the host may call `agent`.
# (agent/__main__.py's main() is imported and called, not run by runpy: the same, without
# loading runpy and importlib.util, a twentieth of a status read's time on the host.)
# Its exit status then is NO_RUNTIME_EXIT: the laptop tells "nothing of tether is there (a
# wiped or rebuilt host)" from any other failure by it, never by the words.
NO_RUNTIME_EXIT = 86
_BOOT = ("import sys, os; p = sys.argv.pop(1); os.path.isfile(p + '/agent/__main__.py') or "
         f"sys.exit(sys.stderr.write('no tether runtime at ' + p + chr(10)) and {NO_RUNTIME_EXIT}); sys.path[0] = p; "
         "from agent.__main__ import main; sys.exit(main())")


def agent_argv(python: str, runtime_dir: str, *args: str) -> List[str]:
    """The command line that runs `agent <args>` from the runtime folder with that Python.
    `status` runs with -S (no site-packages: it is the standard library only), which spares
    every status read the host environment's .pth files (a conda or torch image has many)."""
    return [python, *(["-S"] if args[:1] == ("status",) else []), "-c", _BOOT, runtime_dir, *args]


def self_argv(*args: str) -> List[str]:
    """agent_argv for this agent's own Python and runtime (the agent starting a helper)."""
    import sys

    return agent_argv(sys.executable, str(Path(__file__).resolve().parent.parent), *args)


def code_digest(files: Mapping[str, Mapping[str, object]]) -> str:
    """One digest of a code manifest ({path: {mode, sha256}}): both ends compute it, so a job's
    snapshot is checked to hold exactly what its launch sent."""
    return code_digest_of((rel, f["mode"], f["sha256"]) for rel, f in files.items())  # type: ignore[misc]


def code_digest_of(files: Iterable[Tuple[str, int, str]]) -> str:
    """code_digest of (path, mode, sha256) rows, in any order: one line each, sorted by path,
    hashed at once (10,000 files: a line each, not a call each)."""
    lines = sorted(f"{rel}\0{int(mode) & 0o777:o}\0{sha256}\n" for rel, mode, sha256 in files)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


# -- messages: what the host answers, typed and checked where it enters the laptop -------------
#
# Every field below is read from a host, which tether does not trust: from_json keeps a value
# only if it has the field's type (a wrong one becomes the default), truncates text, and caps
# collections. Unknown keys are ignored, so either side can be newer.

# Asked of an agent through its environment, not a flag: an older agent (a job launched by an
# older tether) ignores it and answers as before, where an unknown flag would fail the call.
STATUS_RECENT_ENV = "TETHER_STATUS_RECENT"      # status: also the progress rows, thinned to N
SIZES_ONLY_ENV = "TETHER_LIST_SIZES_ONLY"       # list-files (runtimes before pull-files): sizes only

MAX_TEXT = 2000       # characters of any one string from a host
MAX_ITEMS = 64        # entries of any list or mapping from a host


def _scalar(value: Any) -> Optional[Union[int, float, str, bool]]:
    if isinstance(value, bool) or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value[:MAX_TEXT]
    return None


def _coerce(hint: Any, value: Any, default: Any) -> Any:
    """value if it fits the type hint (recursing into dataclasses, tuples, mappings), else default."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Union:  # Optional[X]
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, default) if len(inner) == 1 else default
    if is_dataclass(hint):
        return from_dict(hint, value) if isinstance(value, dict) else default
    if origin in (tuple, Tuple):
        if not isinstance(value, list):
            return default
        items = [_coerce(args[0], v, None) for v in value[:MAX_ITEMS]]
        return tuple(v for v in items if v is not None)
    if origin in (dict, Dict):  # a mapping of scalars: metrics
        if not isinstance(value, dict):
            return default
        out = {str(k)[:64]: _scalar(v) for k, v in list(value.items())[:MAX_ITEMS]}
        return {k: v for k, v in out.items() if v is not None}
    if hint is float:
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value) else default
    if hint is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else default
    if hint is bool:
        return value if isinstance(value, bool) else default
    if hint is str:
        return value[:MAX_TEXT] if isinstance(value, str) else default
    if isinstance(hint, type) and issubclass(hint, Enum):
        try:
            return hint(value)
        except ValueError:
            return default
    return default


T = TypeVar("T")


def from_dict(cls: Type[T], doc: Any) -> T:
    """An instance of the dataclass cls from an untrusted JSON object (see above)."""
    if not isinstance(doc, dict):
        raise ValueError(f"expected a JSON object for {cls.__name__}, got {type(doc).__name__}")
    hints = get_type_hints(cls)
    values = {}
    for f in fields(cls):  # type: ignore[arg-type]
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else None)  # type: ignore[misc]
        values[f.name] = _coerce(hints[f.name], doc.get(f.name, default), default)
    return cls(**values)


@dataclass(frozen=True)
class Gpu:
    index: int = 0
    name: Optional[str] = None
    util_percent: Optional[float] = None
    mem_used_mb: Optional[float] = None
    mem_total_mb: Optional[float] = None
    temp_c: Optional[float] = None


@dataclass(frozen=True)
class Resources:
    ram_used_gb: Optional[float] = None
    ram_total_gb: Optional[float] = None
    disk_free_gb: Optional[float] = None
    disk_total_gb: Optional[float] = None
    load_1m: Optional[float] = None
    cpu_percent: Optional[float] = None
    gpus: Tuple[Gpu, ...] = ()


@dataclass(frozen=True)
class BackupSummary:
    """The newest backup this agent took, and whether one is being taken or failed."""

    last: Optional[str] = None
    last_step: Optional[int] = None
    in_progress: bool = False
    error: Optional[str] = None


@dataclass(frozen=True)
class MirrorSummary:
    """An hf:// backup mirror's pushes, as the agent sees them."""

    repo: Optional[str] = None
    last: Optional[str] = None
    last_step: Optional[int] = None
    pushed_age_s: Optional[float] = None
    pushing: Optional[str] = None
    pending: Optional[str] = None
    error: Optional[str] = None
    failures: int = 0
    retry_in_s: Optional[float] = None


@dataclass(frozen=True)
class StatusAnswer:
    """One job as its host sees it (`agent status`)."""

    state: JobState = JobState.PENDING
    exists: bool = True
    reason: Optional[str] = None
    failure: Optional[FailureClass] = None
    exit_code: Optional[int] = None
    attempt: int = 0
    stage: Optional[str] = None
    started_at: Optional[float] = None
    ended_at: Optional[float] = None
    heartbeat_age_s: Optional[float] = None
    last_output_age_s: Optional[float] = None
    last_progress_age_s: Optional[float] = None
    step: Optional[int] = None
    metrics: Dict[str, Any] = field(default_factory=dict)
    total_steps: Optional[int] = None        # progress.total, or the workload's own "total"
    steps_per_s: Optional[float] = None
    eta_s: Optional[float] = None
    resources: Resources = Resources()
    warnings: Tuple[str, ...] = ()
    backup: BackupSummary = BackupSummary()
    mirror: Optional[MirrorSummary] = None
    resumed_unverified: bool = False
    log_tail: Tuple[str, ...] = ()            # a FAILED job's last log lines
    deadline_at: Optional[float] = None
    spend_usd: Optional[float] = None

    @classmethod
    def from_json(cls, doc: Any) -> "StatusAnswer":
        """ValueError when it is not an answer at all (not an object, or no known state)."""
        answer = from_dict(cls, doc)
        if doc.get("exists", True) and doc.get("state") not in _STATE_VALUES:
            raise ValueError(f"the host answered an unknown job state {str(doc.get('state'))[:40]!r}")
        return answer

    def to_json(self) -> Dict[str, Any]:
        return asdict(self)


_STATE_VALUES = {s.value for s in JobState}


@dataclass(frozen=True)
class BackupInfo:
    """One folder under a job's backups/, as `agent backups` lists it."""

    name: str = ""
    step: Optional[int] = None
    source: str = ""
    created: Optional[float] = None
    size: int = 0
    files: int = 0
    verified: Optional[bool] = None
    problem: Optional[str] = None

    @classmethod
    def list_from_json(cls, doc: Any) -> List["BackupInfo"]:
        """The listing, each name checked to be a backup name (a name is data, never a path
        until it passes); ValueError if it is not a listing at all."""
        if not isinstance(doc, list):
            raise ValueError("the backups listing is not a list")
        items = [from_dict(cls, d) for d in doc if isinstance(d, dict)]
        return [b for b in items if BACKUP_NAME_RE.fullmatch(b.name)]
