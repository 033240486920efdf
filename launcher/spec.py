"""The job spec: YAML in, frozen pydantic models out, or one line saying what is wrong."""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Dict, List, Literal, Mapping, Optional, Type, Union

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from agent.protocol import FailureClass
from agent.protocol import RunSettings as _Agent  # the defaults the agent plans with: one place

from launcher.errors import SpecError
from launcher.spec_nodes import checked_silence, nodes_problem

# Whole-string patterns. NAME_PATTERN is pydantic's (Rust regex: `$` is the end of the text);
# the compiled ones are used with fullmatch (Python's `$` would let a trailing newline through).
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# A Hub repo id as the Hub accepts it: namespace/name, no "--" or "..", at most 96 characters a part.
HUB_REPO = re.compile(r"(?!.*(?:--|\.\.))[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
Provider = Literal["local", "ssh", "vast", "novita", "kaggle", "colab"]


class _Yaml12Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. In YAML 1.1 `on:` (as in `restart: {on: [...]}`),
    `yes`, `no` and `off` are booleans, which would turn a key into True."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HostSpec(_Strict):
    provider: Provider = "local"
    address: Optional[Union[str, List[str]]] = None   # ssh: user@host[:port] or an alias; a list: the first that answers
    identity_file: Optional[str] = None    # ssh: private key; else ~/.ssh/config, agent, defaults
    root: str = "~/.tether"                # the tether root on the host
    python: Optional[str] = None           # python on the host; local default: tether's own
    connect_timeout_s: float = Field(15.0, gt=0)
    retry_s: float = Field(60.0, ge=0)     # keep retrying a dropped connection this long
    gpu: Optional[str] = None              # rented providers: "RTX_4090", "H100", ...
    num_gpus: int = Field(1, ge=0)
    max_price: Optional[float] = Field(None, gt=0)   # $/h for the whole instance
    disk_gb: Optional[float] = Field(None, gt=0)
    image: str = "pytorch/pytorch:latest"
    min_reliability: float = Field(0.98, ge=0, le=1)
    ready_timeout_min: float = Field(10.0, gt=0)     # a host not up by then is destroyed
    tries: int = Field(3, ge=1)                      # offers tried before giving up
    session_hours: Optional[float] = Field(None, gt=0)  # a session's hard end (colab: 12)
    nodes: int = Field(1, ge=1, le=64)               # one job on this many hosts (torch's rendezvous)
    master_addr: Optional[str] = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9.:_-]{0,252}$")  # node 0 as the others reach it
    master_port: int = Field(29500, ge=1024, le=65533)  # torch's; tether's agents use the next one
    join_timeout_s: float = Field(120.0, gt=0)       # how long the nodes wait for each other
    node_silence_s: Annotated[float, AfterValidator(checked_silence)] = 15.0  # a silent node fails the job

    @model_validator(mode="after")
    def _ssh_needs_address(self) -> "HostSpec":
        if self.provider == "ssh" and not self.address:
            raise ValueError("provider ssh needs host.address (user@host[:port] or an ~/.ssh/config alias)")
        return self

    @model_validator(mode="after")
    def _nodes_are_machines_you_own(self) -> "HostSpec":
        problem = nodes_problem(self.provider, self.nodes, self.addresses if self.address else [])
        if problem:
            raise ValueError(problem)
        return self

    @property
    def addresses(self) -> List[str]:
        return self.address if isinstance(self.address, list) else [self.address or ""]


class HeartbeatSpec(_Strict):
    every_s: float = Field(_Agent.heartbeat.every_s, gt=0)
    stall_after_s: float = Field(_Agent.heartbeat.stall_after_s, gt=0)


class BackupSpec(_Strict):
    every_min: float = Field(_Agent.backup.every_min, gt=0)
    keep: int = Field(_Agent.backup.keep, ge=1)
    mirror: Optional[str] = None           # laptop | hf://user/repo
    mirror_wait_s: float = Field(_Agent.backup.mirror_wait_s, gt=0)  # at the end, how long to wait for the last push
    mode: Literal["link", "copy"] = "link"  # link: hard links where possible (instant, no space)
    on_disk_full: Literal["continue", "stop"] = "continue"
    wait_s: float = Field(_Agent.backup.wait_s, gt=0)     # how long an asked-for checkpoint may take

    @field_validator("mirror")
    @classmethod
    def _mirror_kind(cls, v: Optional[str]) -> Optional[str]:
        if v is None or v == "laptop":
            return v
        if not v.startswith("hf://"):
            raise ValueError(f"{v!r}: use 'laptop' or 'hf://user/repo' (a private Hub repo for the backups)")
        if not HUB_REPO.fullmatch(v[len("hf://"):]):
            raise ValueError(f"{v!r}: not a Hub repo name; use hf://user/name with letters, digits, "
                             "'-', '_' or '.'")
        return v

    @property
    def hub_repo(self) -> Optional[str]:
        return self.mirror[len("hf://"):] if self.mirror and self.mirror.startswith("hf://") else None


class RestartSpec(_Strict):
    max: int = Field(_Agent.restart.max, ge=0)
    on: List[FailureClass] = [FailureClass(c) for c in _Agent.restart.on]
    backoff_s: float = Field(_Agent.restart.backoff_s, ge=0)


class StopSpec(_Strict):
    grace_s: float = Field(_Agent.stop.grace_s, ge=0)


class LimitsSpec(_Strict):
    max_hours: Optional[float] = Field(None, gt=0)   # per run of the agent (launch or resume)
    max_usd: Optional[float] = Field(None, gt=0)
    margin_s: Optional[float] = Field(None, ge=0)    # stop this long before the limit


class WatchSpec(_Strict):
    min_disk_free_gb: Optional[float] = Field(5.0, ge=0)
    max_ram_percent: Optional[float] = Field(95.0, gt=0, le=100)
    max_gpu_mem_percent: Optional[float] = Field(None, gt=0, le=100)


class PublishSpec(_Strict):
    repo: str
    private: bool = True

    @field_validator("repo")
    @classmethod
    def _repo_name(cls, v: str) -> str:
        if not HUB_REPO.fullmatch(v):
            raise ValueError(f"{v!r}: not a Hub repo name; use user/name with letters, digits, '-', '_' or '.'")
        return v


class ProgressSpec(_Strict):
    """Progress read from the script's own printed lines (`iter 100: loss 2.31`): named groups
    become metrics, `step` the step, `total` (or `total:` here) the step it ends at."""

    pattern: Optional[str] = None
    total: Optional[int] = Field(None, ge=1)

    @field_validator("pattern")
    @classmethod
    def _a_useful_regex(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        try:
            groups = re.compile(v).groupindex
        except re.error as exc:
            raise ValueError(f"not a regular expression ({exc})") from None
        if not groups:
            raise ValueError("name what it captures: (?P<step>\\d+) for the step, (?P<loss>[\\d.]+) for a metric")
        reserved = sorted(set(groups) & {"time", "checkpoint"})
        if reserved:
            raise ValueError(f"group name {reserved[0]!r} is tether's own; choose another")
        return v


class AutodownSpec(_Strict):
    """`autodown: true` or `autodown: {wait_min: 30}`: the rented host goes once the job ended
    and its results are safe, and never waits for that longer than wait_min."""

    wait_min: float = Field(60.0, gt=0)


class StageSpec(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    run: str


class WorkloadSpec(BaseModel):
    """`workload: {kind: causal-lm, ...}`: its options are checked by the workload's own schema
    (workloads/causal_lm/config.py, standard library only), the one place they are defined."""

    model_config = ConfigDict(extra="allow", frozen=True)
    kind: Literal["causal-lm"]

    @model_validator(mode="after")
    def _the_workloads_own_check(self) -> "WorkloadSpec":
        from workloads.causal_lm.config import ConfigError, parse

        try:
            parse(self.model_dump())
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self


class JobSpec(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    workdir: str = "."
    host: HostSpec = HostSpec()
    setup: Optional[str] = None
    run: Optional[str] = None
    workload: Optional[WorkloadSpec] = None
    stages: Optional[List[StageSpec]] = None
    env: Dict[str, str] = {}
    secrets: List[str] = []
    heartbeat: HeartbeatSpec = HeartbeatSpec()
    backup: BackupSpec = BackupSpec()
    restart: RestartSpec = RestartSpec()
    stop: StopSpec = StopSpec()
    limits: LimitsSpec = LimitsSpec()
    watch: WatchSpec = WatchSpec()
    progress: ProgressSpec = ProgressSpec()
    autodown: Optional[Union[bool, AutodownSpec]] = None
    artifacts: List[str] = ["outputs/"]
    publish: Optional[PublishSpec] = None

    @field_validator("env", mode="before")
    @classmethod
    def _env_scalars_to_str(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: (json.dumps(x) if isinstance(x, bool) else str(x)) if isinstance(x, (int, float, bool)) else x
                    for k, x in v.items()}
        return v

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: Dict[str, str]) -> Dict[str, str]:
        for name in v:
            if not ENV_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an environment variable name (letters, digits, '_', "
                                 "not starting with a digit)")
        return v

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, v: List[str]) -> List[str]:
        for name in v:
            if not ENV_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an environment variable name")
            if name.startswith("TETHER_"):
                raise ValueError(f"{name!r}: names starting with TETHER_ are tether's own; rename it")
        return v

    @field_validator("stages")
    @classmethod
    def _unique_stage_names(cls, v: Optional[List[StageSpec]]) -> Optional[List[StageSpec]]:
        if v is not None:
            names = [s.name for s in v]
            if not names:
                raise ValueError("stages is empty: list at least one {name, run}")
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"stage names must be unique; repeated: {', '.join(dupes)}")
        return v

    def autodown_enabled(self, rented: bool) -> bool:
        """Default: on for rented hosts."""
        return rented if self.autodown is None else self.autodown is not False

    @property
    def autodown_wait_s(self) -> float:
        conf = self.autodown if isinstance(self.autodown, AutodownSpec) else AutodownSpec()
        return conf.wait_min * 60.0

    @model_validator(mode="after")
    def _one_way_to_run(self) -> "JobSpec":
        given = [k for k in ("run", "workload", "stages") if getattr(self, k) is not None]
        if len(given) != 1:
            which = " and ".join(f"'{k}'" for k in given) if given else "none"
            raise ValueError(f"give exactly one of 'run', 'workload' or 'stages' (got {which})")
        return self


@dataclass(frozen=True)
class LoadedSpec:
    """A valid spec plus what was resolved on the laptop: paths and secret values."""

    spec: JobSpec
    path: Path
    workdir: Path
    secret_values: Mapping[str, str]

    @property
    def spec_hash(self) -> str:
        return hashlib.sha256(self.spec.model_dump_json().encode()).hexdigest()[:16]


def load_spec(path: Union[str, Path], environ: Mapping[str, str],
              host_override: Optional[HostSpec] = None) -> LoadedSpec:
    path = Path(path)
    label = path.name
    try:
        raw = yaml.load(path.read_text(), Loader=_Yaml12Loader)  # noqa: S506 (a SafeLoader)
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file", "give the path of a job spec (YAML)") from None
    except IsADirectoryError:
        raise SpecError(f"{path}: is a folder, not a job spec", f"give its spec file, e.g. {path / 'job.yaml'}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot be read ({exc.__class__.__name__})", "give the path of a job spec (YAML)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise SpecError(f"{label}:{where}: not valid YAML ({getattr(exc, 'problem', exc)})",
                        "fix the YAML syntax") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{label}: expected a mapping of keys (name, workdir, run, ...)",
                        "see examples/ for a spec")
    if host_override is not None:
        raw = {**raw, "host": host_override.model_dump(exclude_unset=True)}
    try:
        spec = JobSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(_describe(label, exc)) from None

    workdir = (path.parent / spec.workdir).resolve()
    if not workdir.is_dir():
        raise SpecError(f"{label}: workdir: folder {workdir} does not exist",
                        "set workdir relative to the spec file")
    values = {}
    for i, name in enumerate(spec.secrets):
        if name not in environ:
            raise SpecError(f"{label}: secrets[{i}]: {name} is not set in the environment",
                            f"export {name} before launching")
        values[name] = environ[name]
    return LoadedSpec(spec=spec, path=path.resolve(), workdir=workdir, secret_values=values)


def _describe(label: str, exc: ValidationError) -> str:
    # An unknown key usually explains the "missing" errors next to it: report it first.
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    loc = [p for p in first["loc"]]
    where = _dotted(loc)
    if first["type"] == "extra_forbidden":
        known = _known_keys(JobSpec, loc[:-1])
        guess = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.5)
        hint = f"did you mean '{guess[0]}'?" if guess else f"known keys: {', '.join(sorted(known))}"
        msg = f"{label}: {where}: unknown key; {hint}"
    elif first["type"] == "missing":
        msg = f"{label}: {where}: required"
    else:
        got = first.get("input")
        shown = "" if isinstance(got, (dict, list)) or got is None else f", got {got!r}"
        text = first["msg"].removeprefix("Value error, ")
        if where and text.startswith(where + "."):  # the message names its own field (the workload's schema)
            msg = f"{label}: {text}"
        else:
            msg = f"{label}: {where + ': ' if where else ''}{text}{shown}"
    more = len(errors) - 1
    return msg + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def _dotted(loc: List[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part not in ("function-after",) and not part.startswith("function-"):
            out += ("." if out else "") + part
    return out


def _known_keys(model: Type[BaseModel], loc: List[Any]) -> List[str]:
    """The field names of the model found at loc, for 'did you mean'."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = _model_in(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _model_in(annotation: Any) -> Any:
    """The BaseModel inside Optional[X] / List[X], if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None
