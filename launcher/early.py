"""`tether status` and `tether jobs` start their SSH commands before the rest of tether is loaded: the
connection (a handshake, or a command over the shared one) runs while Python imports the status
path (and rich to draw it), which takes the answer from here (OpenSshHost.run looks for its exact
command line: transport/prestarted.py). Anything unusual (another verb, an option the lean path
does not read, an unknown job, a host that is not reached over OpenSSH) starts nothing, and the
normal path runs as always; a command started here and not taken is ended when tether exits.

Finding the command (the registry, the endpoint, the agent's command line) loads a tenth of a
second of modules, so the command lines a status read started are remembered, under the
command line's own words, in <home>/cache/early-commands.bin: the next same read starts them
first, having loaded nothing but os (the file is marshal behind a CRC line: JSON would load
json and re first; the commands are forked and run by transport/spawned.py: subprocess would
load locale, re and threading first). The normal path still builds its own and takes only an exact match,
so a remembered command that went stale (the job moved, its settings changed) is only a read
that is ended unused."""

from __future__ import annotations

import marshal
import os
import sys
import zlib

from launcher.transport import prestarted

TYPE_CHECKING = False  # typing is not loaded before the ssh starts
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Sequence, Set, Tuple

    Argv = Tuple[str, ...]
    Key = tuple

REMEMBERED = os.path.join("cache", "early-commands.bin")
MAGIC = b"tether-early 1 "
KEEP = 128                    # entries remembered (a status read's keeper is one more); the oldest go first
# What else decides the command line: the same words under another setting are another entry.
SETTINGS = ("TETHER_SSH_PERSIST_S", "TETHER_NO_OPENSSH", "TETHER_SSH_CONFIG", "TETHER_HOME")

def start(args: Sequence[str]) -> None:
    try:
        if args and args[0] in ("status", "jobs"):
            remembered = _Remembered(_key(args))
            started = remembered.start(keepers=remembered.doc.get(remembered.key + ("keeper",)))
            try:
                remembered.keep(*(_start(list(args), started) or (None, None)))
            except Exception:
                remembered.keep([], [])  # no such job any more (forgotten): nothing to start next time
                raise
        elif args and args[0] in ("launch", "pull"):
            _start_replayed(args)
    except Exception:  # never at the cost of the command: the normal path asks on its own
        prestarted.discard()


# Keepers (transport/keeper.py) a `status JOB` read found missing, started when it is done.
_keepers_wanted: List[tuple] = []


def start_keepers(code: int) -> None:
    """After a read that answered (code 0) has printed: its missing keepers, detached, for
    the next read. Never at the cost of the command (a keeper is only a shortcut)."""
    wanted = list(_keepers_wanted) if code == 0 else []
    _keepers_wanted.clear()
    if not wanted:
        return
    try:
        sys.stdout.flush()  # the answer is out before anything else is started
        from launcher.transport import keeper

        for path, serve_argv, idle_s in wanted:
            keeper.start_detached(path, serve_argv, idle_s)
    except Exception:
        pass


def _key(args: Sequence[str], *more: str) -> Key:
    return (tuple(args), tuple(os.environ.get(k) for k in SETTINGS), *more)


def read_remembered(path: str) -> dict:
    """{key: [argv, ...]}; a missing, cut or damaged file (its CRC does not match) is empty."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        head, _, body = data.partition(b"\n")
        if not head.startswith(MAGIC) or int(head[len(MAGIC):], 16) != zlib.crc32(body):
            return {}
        doc = marshal.loads(body)
    except (OSError, ValueError, EOFError, TypeError):
        return {}
    return doc if isinstance(doc, dict) else {}


def write_remembered(path: str, doc: dict) -> None:
    """Whole or not at all, as the laptop's other caches (written after the read has begun:
    loading cache_files then costs nothing)."""
    from pathlib import Path

    from launcher.cache_files import write_whole

    body = marshal.dumps(doc)
    write_whole(Path(path), MAGIC + b"%x\n" % zlib.crc32(body) + body)


# -- launch and pull -------------------------------------------------------------------------
#
# `tether launch SPEC` opens a session on the host (`agent launch`: it says hello, then waits
# for the laptop's digests before it takes any lock); `tether pull JOB` opens one too (`agent
# pull-files`: it waits for the laptop's requests). The ssh command lines of the same launch
# or pull last time are started first, with their stdin open, so the host's side starts while
# tether loads and reads the spec or the registry; OpenSshHost.stream takes one when it would
# start exactly that line, and any other is ended at exit. The lines this command really
# started (prestarted.remember) are kept when it is done (keep_started). Only a line that is
# safe to start for nothing is remembered: sessions that wait for their requests on stdin, and
# commands that only read.

_replayed: Optional[_Remembered] = None


def _start_replayed(args: Sequence[str]) -> None:
    global _replayed
    if args[0] == "pull":   # where the files land does not change what the host is asked
        args = _without_option(args, "--to")
    _replayed = _Remembered(_key(args, os.getcwd()))   # a spec's path may be relative
    prestarted.take_remembered()   # only what this command starts is kept for the next
    _replayed.start(stdin=True)


def _without_option(args: Sequence[str], name: str) -> List[str]:
    """args less `name VALUE` and `name=VALUE` (before a `--`, after which all are words)."""
    out: List[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            return out + list(args[i:])
        if a == name:
            i += 2
            continue
        if not a.startswith(name + "="):
            out.append(a)
        i += 1
    return out


def keep_started() -> None:
    """The launch or pull is done (or failed): the lines it started that it remembered
    (prestarted.remember) are what the next same command starts first (none: it starts nothing)."""
    global _replayed
    try:
        if _replayed is not None:
            _replayed.keep(prestarted.take_remembered())
    finally:
        _replayed = None


class _Remembered:
    """The command lines remembered under one key, read and started before anything else loads."""

    def __init__(self, key: Key) -> None:
        from launcher.home import likely_data_dir

        self.key = key
        self.path = os.path.join(likely_data_dir(os.environ), REMEMBERED)
        self.doc: Dict[Key, list] = read_remembered(self.path)

    def start(self, stdin: bool = False, keepers: object = None) -> Set[Argv]:
        """Each remembered command started, or asked of its keeper where one listens."""
        entry = self.doc.get(self.key)
        kept = {k[0]: k for k in keepers if isinstance(k, tuple) and len(k) == 4} if isinstance(keepers, list) else {}
        started: Set[Argv] = set()
        for argv in entry if isinstance(entry, list) else []:
            if (isinstance(argv, list) and argv and argv[0] == "ssh" and all(isinstance(a, str) for a in argv)
                    and tuple(argv) not in started):
                if not (tuple(argv) in kept and _ask_keeper(argv, *kept[tuple(argv)][1:])):
                    _popen(argv, stdin)
                started.add(tuple(argv))
        return started

    def keep(self, commands: Optional[List[Argv]], keepers: Optional[list] = None) -> None:
        """Written only when it changed (a read that starts what it remembered writes nothing)."""
        if commands is None:
            return
        entry = [list(c) for c in commands]
        keeper_key = self.key + ("keeper",)
        if self.doc.get(self.key) == entry and self.doc.get(keeper_key, []) == (keepers or []):
            return
        self.doc.pop(self.key, None)
        self.doc.pop(keeper_key, None)
        if keepers:
            self.doc[keeper_key] = keepers
        self.doc[self.key] = entry           # newest last
        for old in list(self.doc)[:-KEEP]:
            del self.doc[old]
        # Where it was read from: a guess of the home that is not platformdirs' answer (another
        # platformdirs, another platform) still finds it next time.
        write_remembered(self.path, self.doc)
        try:
            os.unlink(os.path.join(os.path.dirname(self.path), "early-commands.json"))  # before 0.1's .bin
        except OSError:
            pass


def _ask_keeper(argv: Sequence[str], path: object, dirs: object, recent: object) -> bool:
    """The read sent to the keeper of its host (transport/keeper.py), taken in place of argv."""
    if not (isinstance(path, str) and isinstance(dirs, tuple) and isinstance(recent, int)):
        return False
    from launcher.transport import keeper

    asked = keeper.ask(path, dirs, recent)
    if asked is not None:
        prestarted.add(argv, asked)
    return asked is not None


def _popen(argv: Sequence[str], stdin: bool = False) -> None:
    from launcher.transport.child_env import child_environ
    from launcher.transport.spawned import Spawned

    prestarted.add(argv, Spawned(argv, child_environ(), stdin=stdin))


def _start(args: List[str], started: Set[Argv]) -> Optional[Tuple[List[Argv], list]]:
    """The command line read as the lean path reads it (lean/verbs.py): what it would not run
    itself starts nothing here. The commands this read needs and, for `status JOB`, where its
    keeper listens (None: the lean path would not run it, or a host is not OpenSSH); those
    not started already are started now."""
    import json

    from launcher.lean.verbs import SPARK_ROWS, parse

    parsed = parse(args)
    if parsed is None or parsed[0] not in ("status", "jobs"):
        return None
    job, as_json = parsed[1].get("job"), parsed[1]["as_json"]

    from launcher.registry import Registry
    from launcher.settings import places
    from launcher.transport.agent_client import AgentClient
    from launcher.transport.openssh import is_shared

    recent = SPARK_ROWS if job and not as_json else 0
    where = places()
    registry = Registry(where.registry)
    try:
        records = [registry.resolve(job)] if job else registry.all()
    finally:
        registry.close()
    groups: Dict[str, list] = {}
    for r in records:
        if r.kind == "agent" and r.endpoint.get("kind") != "local" and (len(records) == 1 or r.kept_answer is None):
            groups.setdefault(json.dumps(r.endpoint, sort_keys=True), []).append(r)
    commands: List[Argv] = []
    keepers: list = []
    for group in groups.values():
        host = _openssh_host(group[0].endpoint, where)
        if host is None:  # paramiko: nothing to start early
            return None
        client = AgentClient(host, group[0].python, group[0].runtime_dir)
        dirs = tuple(r.job_dir for r in group)
        full = tuple(host.command_line(client.status_argv(dirs, recent)))
        if full not in started:
            _popen(full)
        commands.append(full)
        if job and host.persist_s > 0 and host.control is not None and is_shared(host.control):
            # `status JOB`: through a keeper next time
            keepers.append(_keeper_of(host, client, group[0].remote_root, full, dirs, recent))
    return commands, keepers


def _keeper_of(host, client, root: str, full: Argv, dirs: Tuple[str, ...], recent: int) -> tuple:
    """(the command, the keeper's socket, the read's job folders and rows); the keeper is
    started once this read is done where none listens there."""
    from launcher.transport import keeper

    serve_argv = tuple(host.command_line(client.argv("serve", root)))
    path = keeper.socket_path(str(host.control), serve_argv)
    if not isinstance(prestarted.peek(full), keeper.Asked) and not keeper.alive(path):
        _keepers_wanted.append((path, serve_argv, host.persist_s))
    return (full, path, dirs, recent)


def _openssh_host(endpoint: dict, where):
    """The host as launcher.transport.connect.ssh_host makes it for a status read (the same
    command line, or nothing is taken from here), or None where that would not be OpenSSH."""
    import shutil

    if not shutil.which("ssh") or os.environ.get("TETHER_NO_OPENSSH"):
        return None
    from launcher.transport.endpoint import Endpoint
    from launcher.transport.openssh import OpenSshHost, control_dir

    return OpenSshHost(Endpoint.of(endpoint), where.known_hosts, ssh_config=where.ssh_config,  # type: ignore[arg-type]
                       control=control_dir(where.data), connect_timeout_s=float(endpoint.get("connect_timeout_s", 15)),
                       retry_s=0.0)
