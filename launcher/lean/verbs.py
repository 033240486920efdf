"""The command lines users type many times an hour, read without typer: `tether status JOB`,
`tether jobs`, `tether logs JOB -f`, `tether launch SPEC` and `tether pull JOB`. typer (with the pydantic it
coerces every value through) costs more to load than a status answer takes to come.

`parse` reads only what it is sure of: the options in VERBS, each once, as `--opt V`, `--opt=V`
or a short flag with its value apart. Anything else (another verb, an option not here, `--help`,
`--debug` before the verb, a value it cannot read, a job missing) is None, and the Typer app
reads the line as always, with its own help and errors; a line read here runs in lean/dispatch.py
(bodies in looks.py, launching.py and pulling.py). The Typer commands (cli/run.py, cli/results.py)
stay the one definition users see;
tests/test_imports.py proves this table agrees with them, option by option and on a set of
command lines read both ways."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

SPARK_ROWS = 64   # progress rows `tether status JOB` draws, asked for with its status (early.py too)


@dataclass(frozen=True)
class Opt:
    name: str                 # the parameter's name in the command's function
    flags: Tuple[str, ...]
    kind: type                # bool (a flag), int or str
    default: Any = None
    many: bool = False        # typer's repeatable option: read here when given once, as [value]


@dataclass(frozen=True)
class Verb:
    args: Tuple[str, ...]     # the positional parameters' names, in order
    required: int             # how many of them must be given
    opts: Tuple[Opt, ...]


_JSON = Opt("as_json", ("--json",), bool, False)
VERBS: Dict[str, Verb] = {
    "jobs": Verb((), 0, (_JSON,)),
    "status": Verb(("job",), 0, (_JSON,)),
    "logs": Verb(("job",), 1, (Opt("follow", ("--follow", "-f"), bool, False), Opt("tail", ("--tail", "-n"), int, 100),
                               Opt("which", ("--file",), str, "workload"), Opt("node", ("--node",), int, None))),
    "launch": Verb(("spec",), 1, (Opt("host", ("--host",), str, None), Opt("follow", ("--follow", "-f"), bool, False),
                                  Opt("dry_run", ("--dry-run",), bool, False))),
    "pull": Verb(("job",), 1, (Opt("to", ("--to",), str, None), Opt("path", ("--path",), str, None, many=True))),
}

Parsed = Tuple[str, Dict[str, Any]]


def parse(args: Sequence[str]) -> Optional[Parsed]:
    """(verb, the command function's arguments), or None: leave this line to the Typer app."""
    if not args or args[0] not in VERBS:
        return None
    verb = VERBS[args[0]]
    by_flag = {f: o for o in verb.opts for f in o.flags}
    got: Dict[str, Any] = {o.name: o.default for o in verb.opts}
    given: set = set()
    named: List[str] = []
    rest = list(args[1:])
    while rest:
        word = rest.pop(0)
        if not word.startswith("-"):
            named.append(word)
            continue
        flag, eq, value = word.partition("=") if word.startswith("--") else (word, "", "")
        opt = by_flag.get(flag)
        if opt is None or opt.name in given or (eq and opt.kind is bool):
            return None
        given.add(opt.name)
        if opt.kind is bool:
            got[opt.name] = True
            continue
        if not eq:
            if not rest:
                return None
            value = rest.pop(0)
        got[opt.name] = _read(opt.kind, value)
        if got[opt.name] is None:
            return None
        if opt.many:
            got[opt.name] = [got[opt.name]]
    if not verb.required <= len(named) <= len(verb.args):
        return None
    got.update(zip(verb.args, named + [None] * (len(verb.args) - len(named))))
    return args[0], got


def _read(kind: type, value: str) -> Any:
    """The value, or None where typer might read it otherwise (a sign, spaces, a dash first)."""
    if value.startswith("-"):
        return None
    if kind is int:
        return int(value) if value.isascii() and value.isdigit() else None
    return value
