"""The folder tether keeps its files in, as a string: TETHER_HOME, or the platform's user data
folder. Light to load (platformdirs only when TETHER_HOME is not set): early.py finds its
remembered commands here before the rest of tether loads; settings.places() builds on it."""

from __future__ import annotations

from typing import Mapping


def data_dir(environ: Mapping[str, str]) -> str:
    home = environ.get("TETHER_HOME")
    if home:
        return home
    import platformdirs

    return platformdirs.user_data_dir("tether")
