"""Commands started before the CLI loaded (launcher/early.py), each waiting to be taken by the
Host that would have run exactly that command line; one not taken is ended when tether exits.
A status read may instead have been sent to its host's keeper (transport/keeper.py: an Asked,
which answers poll, kill and wait as a finished process would). And the other way: the command
lines this command started that the next same one may start early (remember), which early.py
keeps when a launch or a pull is done."""

from __future__ import annotations

import atexit

from launcher.transport.spawned import Spawned

TYPE_CHECKING = False  # typing is not loaded before a status read's ssh starts (early.py)
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Sequence, Tuple, Union

    from launcher.transport.keeper import Asked

    Started = Union[Spawned, Asked]

_started: Dict[Tuple[str, ...], Started] = {}
_remembered: List[Tuple[str, ...]] = []


def add(argv: Sequence[str], proc: Started) -> None:
    """proc: a Spawned (early.py), or a keeper's Asked (transport/keeper.py)."""
    if not _started:
        atexit.register(discard)
    _started[tuple(argv)] = proc


def take(argv: Sequence[str]) -> Optional[Started]:
    """What was started early for exactly this command line, if anything (once)."""
    return _started.pop(tuple(argv), None)


def is_process(started: object) -> bool:
    """A command (not a read asked of a keeper)."""
    return isinstance(started, Spawned)


def peek(argv: Sequence[str]) -> object:
    """What was started for exactly this command line, left in place."""
    return _started.get(tuple(argv))


def waiting() -> list:
    return list(_started.values())


def discard() -> None:
    """Each one not taken ended (one that cannot be is left, not the others)."""
    for proc in _started.values():
        try:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        except OSError:
            pass
    _started.clear()


def remember(argv: Sequence[str]) -> None:
    """An ssh command line this command started, harmless to start for nothing (it only reads,
    or waits for its stdin): the next same launch or pull starts it before tether loads."""
    if tuple(argv) not in _remembered:
        _remembered.append(tuple(argv))


def forget(argv: Sequence[str]) -> None:
    """Not to be started first next time after all."""
    if tuple(argv) in _remembered:
        _remembered.remove(tuple(argv))


def take_remembered() -> List[Tuple[str, ...]]:
    """What was remembered, in order; forgotten here."""
    taken = list(_remembered)
    _remembered.clear()
    return taken
