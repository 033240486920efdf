"""The folder tether keeps its files in, as a string: TETHER_HOME, or the platform's user data
folder. Light to load (platformdirs only when TETHER_HOME is not set): early.py finds its
remembered commands here before the rest of tether loads; settings.places() builds on it."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing is not loaded before a status read's ssh starts (early.py)
if TYPE_CHECKING:
    from typing import Mapping


def data_dir(environ: Mapping[str, str]) -> str:
    home = environ.get("TETHER_HOME")
    if home:
        return home
    import platformdirs

    return platformdirs.user_data_dir("tether")


def likely_data_dir(environ: Mapping[str, str]) -> str:
    """data_dir without loading platformdirs (a fifth of early.py's time before its ssh starts):
    its answer on Linux and macOS in the usual cases. Only for what early.py remembers, which
    it reads and writes here: a guess that is not tether's home still works, only elsewhere."""
    home = environ.get("TETHER_HOME")
    if home:
        return home
    xdg = environ.get("XDG_DATA_HOME", "")  # used only when absolute, as platformdirs 4.x does
    if xdg.startswith("/"):
        return os.path.join(xdg, "tether")
    if sys.platform == "darwin":
        return os.path.expanduser("~/Library/Application Support/tether")
    return os.path.expanduser("~/.local/share/tether")


def private_folder(path: str) -> bool:
    """A folder of this user's own that no one else may enter: where tether puts sockets it
    trusts (its control folder in /tmp, which anyone may have made first)."""
    import stat

    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077
