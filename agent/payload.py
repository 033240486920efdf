"""The create-job payload: what the laptop sends the agent once per job, defined once.

The launcher builds a JobPayload (launcher/jobs/launch.py, and the Kaggle kernel's script),
`agent create-job` checks it and keeps it as spec.json, and the agent's RunPlan is built from
it: every default the agent plans with is a field default here, nowhere else on the host.
`spec` is the whole job spec as JSON (launcher/spec.py validated it); RunSettings is the part
of it the agent reads. Re-exported by agent.protocol, where the launcher reads it.

Unlike the answers in agent.protocol, a payload comes from the laptop, which is trusted: a
value of the wrong type is a bug and is refused in one line naming the field, never coerced.
A payload of another version is refused in one line; one without a version (written by a
tether before versions, kept in an old job's spec.json) has this shape and is read as it is.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from typing import Any, Dict, Optional, Tuple, Type, TypeVar, Union, get_args, get_origin, get_type_hints

PAYLOAD_VERSION = 1


class ProtocolMismatch(ValueError):
    """A payload of another version than this agent's."""


@dataclass(frozen=True)
class HeartbeatSettings:
    every_s: float = 10.0
    stall_after_s: float = 900.0


@dataclass(frozen=True)
class RestartSettings:
    max: int = 3
    on: Tuple[str, ...] = ("infra", "stall")   # failure classes (agent.protocol.FailureClass)
    backoff_s: float = 30.0


@dataclass(frozen=True)
class BackupSettings:
    every_min: float = 30.0
    keep: int = 3
    mode: str = "link"                 # hard links where possible; copy: real copies
    wait_s: float = 600.0              # how long an asked-for checkpoint may take
    on_disk_full: str = "continue"     # or stop
    mirror: Optional[str] = None       # hf://<repo>
    mirror_wait_s: float = 1800.0      # how long the agent waits at the end for the last push


@dataclass(frozen=True)
class StopSettings:
    grace_s: float = 120.0


@dataclass(frozen=True)
class LimitsSettings:
    max_hours: Optional[float] = None  # per run of the agent
    max_usd: Optional[float] = None
    margin_s: Optional[float] = None   # None: time for a checkpoint and a backup (RunPlan)


@dataclass(frozen=True)
class WatchSettings:
    min_disk_free_gb: Optional[float] = None
    max_ram_percent: Optional[float] = None
    max_gpu_mem_percent: Optional[float] = None


@dataclass(frozen=True)
class ProgressSettings:
    pattern: Optional[str] = None      # progress read from printed lines
    total: Optional[int] = None        # the step the run ends at


@dataclass(frozen=True)
class StageSettings:
    name: str
    run: str


@dataclass(frozen=True)
class RunSettings:
    """The part of the job spec the agent plans with."""
    name: str
    stages: Tuple[StageSettings, ...] = ()
    env: Dict[str, str] = field(default_factory=dict)
    setup: Optional[str] = None
    heartbeat: HeartbeatSettings = HeartbeatSettings()
    restart: RestartSettings = RestartSettings()
    backup: BackupSettings = BackupSettings()
    stop: StopSettings = StopSettings()
    limits: LimitsSettings = LimitsSettings()
    watch: WatchSettings = WatchSettings()
    progress: ProgressSettings = ProgressSettings()


@dataclass(frozen=True)
class HubFacts:
    endpoint: Optional[str] = None     # HF_ENDPOINT as the launcher had it
    disable_xet: Optional[bool] = None


@dataclass(frozen=True)
class JobFacts:
    """What the launcher knows of this job beyond its spec (spec.json's "job")."""
    id: str
    project: str
    command: Optional[str] = None          # the workload's command (a job without stages)
    setup_key: Optional[str] = None        # setup runs once per key
    code_digest: Optional[str] = None      # what the job's code snapshot must hash to
    path_prepend: Tuple[str, ...] = ()     # e.g. the local provider's venv
    python_executable: Optional[str] = None  # host.python: what python/pip in run: mean
    created: Optional[float] = None
    price_per_hour: Optional[float] = None   # of a rented instance
    instance_created: Optional[float] = None
    autodown: bool = False
    autodown_wait_s: float = 3600.0        # the longest a rented host waits for its results
    deadline_at: Optional[float] = None    # absolute: a session's end (limits.max_hours is the spec's)
    resume_first: bool = False             # a job moved to a new host: attempt 0 resumes too
    hub: Optional[HubFacts] = None
    node: Optional[Dict[str, Any]] = None  # a multi-node job's rank, count, master (rendezvous.NodePlan)


@dataclass(frozen=True)
class JobPayload:
    spec: Dict[str, Any]                       # the job spec as JSON: spec.json keeps all of it
    job: JobFacts
    teardown: Optional[Dict[str, Any]] = None  # a rented host's self-teardown request (0600)
    secrets: Optional[Dict[str, str]] = None   # only the Kaggle kernel's (launch hands them to `start`)
    protocol: int = PAYLOAD_VERSION

    @property
    def settings(self) -> RunSettings:
        return build(RunSettings, self.spec, "spec")

    def to_json(self) -> Dict[str, Any]:
        return {"protocol": self.protocol, "spec": self.spec, "job": asdict(self.job),
                "teardown": self.teardown, "secrets": self.secrets}

    @classmethod
    def from_json(cls, doc: Any) -> "JobPayload":
        """ProtocolMismatch for another version; ValueError naming the field for a bad one."""
        if not isinstance(doc, dict):
            raise ValueError(f"the job payload is not a JSON object ({type(doc).__name__})")
        version = doc.get("protocol", PAYLOAD_VERSION)
        if version != PAYLOAD_VERSION:
            raise ProtocolMismatch(f"the job payload is version {version!r}, this agent reads version "
                                   f"{PAYLOAD_VERSION}: launch or resume it with the tether whose runtime is on the host")
        payload = build(cls, doc, "")
        payload.settings  # checked now, at create-job, not when the agent starts
        return payload


T = TypeVar("T")


def build(cls: Type[T], doc: Any, where: str) -> T:
    """cls from a JSON object: unknown keys ignored, a missing or null one takes the field's
    default, a wrong type is a ValueError naming where it is."""
    if not isinstance(doc, dict):
        raise ValueError(f"{where or 'the payload'}: expected an object, got {type(doc).__name__}")
    hints = get_type_hints(cls)
    values = {}
    for f in fields(cls):  # type: ignore[arg-type]
        here = f"{where}.{f.name}" if where else f.name
        value = doc.get(f.name)
        optional = get_origin(hints[f.name]) is Union
        if value is None and not (optional and f.name in doc):
            if f.default is MISSING and f.default_factory is MISSING:  # type: ignore[misc]
                raise ValueError(f"{here}: missing")
            continue
        values[f.name] = _value(hints[f.name], value, here)
    return cls(**values)


def _value(hint: Any, value: Any, where: str) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    if origin is Union:  # Optional[X]
        inner = [a for a in args if a is not type(None)]
        return None if value is None else _value(inner[0], value, where)
    if is_dataclass(hint):
        return build(hint, value, where)
    if origin is tuple and isinstance(value, list):
        return tuple(_value(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict and isinstance(value, dict):
        if args and args[1] is str:  # env: values as text, as a shell would have them
            return {str(k): str(v) for k, v in value.items()}
        return dict(value)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if (hint is int and isinstance(value, int) and not isinstance(value, bool)) or \
            (hint is bool and isinstance(value, bool)) or (hint is str and isinstance(value, str)):
        return value
    raise ValueError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {type(value).__name__} {value!r:.60}")
