"""Kaggle credentials, found the way the official client finds them (Kaggle/kaggle-cli
src/kaggle/api/kaggle_api_extended.py `authenticate`, v2.2.3; kagglesdk kaggle_env.py
`get_access_token_from_env`, 0.1.37):

1. an API token: KAGGLE_API_TOKEN (the token itself, or the path of a file holding it), else
   the file `access_token` (or `access_token.txt`) in the Kaggle config folder. The username is
   not stored with it: it is looked up by introspecting the token (security.OAuthService/
   IntrospectToken), as the CLI does; an inactive token falls through to
2. the legacy API key: KAGGLE_USERNAME + KAGGLE_KEY, else kaggle.json (username, key).

The config folder is KAGGLE_CONFIG_DIR, else ~/.kaggle."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional, Tuple

from .base import AuthFailed, ProviderError

PYTHON_NEEDED = (3, 11)  # kagglesdk >= 0.1.37 declares Requires-Python >= 3.11
TOKEN_HINT = ("create an API token at https://www.kaggle.com/settings (API) and export KAGGLE_API_TOKEN=..., "
              "or save it as ~/.kaggle/access_token")


@dataclass(frozen=True)
class KaggleAuth:
    username: str
    key: Optional[str] = None     # legacy API key: Basic auth
    token: Optional[str] = None   # API token: Bearer auth
    source: str = ""


def require_sdk(version: Tuple[int, ...] = tuple(sys.version_info[:2])) -> None:
    """One line, not an ImportError, where the official client cannot be used."""
    if tuple(version[:2]) < PYTHON_NEEDED:
        raise ProviderError(f"the Kaggle client (kagglesdk) needs Python >= 3.11; tether runs on Python "
                            f"{version[0]}.{version[1]}",
                            "run tether under Python 3.11 or newer, then pip install 'tether[kaggle]'")
    try:
        import kagglesdk  # noqa: F401
    except ImportError:
        raise ProviderError("the Kaggle client is not installed",
                            "pip install 'tether[kaggle]' (it needs Python >= 3.11)") from None


def config_dir(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("KAGGLE_CONFIG_DIR") or "~/.kaggle").expanduser()


def _read(path: Path) -> Optional[str]:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return text or None


def find_token(environ: Mapping[str, str]) -> Tuple[Optional[str], str]:
    value = environ.get("KAGGLE_API_TOKEN")
    if value:
        if Path(value).expanduser().is_file():
            return _read(Path(value).expanduser()), value
        return value.strip(), "KAGGLE_API_TOKEN"
    for name in ("access_token", "access_token.txt"):
        path = config_dir(environ) / name
        token = _read(path)
        if token:
            return token, str(path)
    return None, ""


def find_legacy(environ: Mapping[str, str]) -> Tuple[Optional[str], Optional[str], str]:
    user, key = environ.get("KAGGLE_USERNAME"), environ.get("KAGGLE_KEY")
    if user and key:
        return user, key, "KAGGLE_USERNAME/KAGGLE_KEY"
    path = config_dir(environ) / "kaggle.json"
    text = _read(path)
    if text:
        try:
            data = json.loads(text)
        except ValueError:
            raise ProviderError(f"{path} is not JSON", "download it again from kaggle.com/settings") from None
        if isinstance(data, dict) and data.get("username") and data.get("key"):
            return str(data["username"]), str(data["key"]), str(path)
    return None, None, ""


def resolve(environ: Mapping[str, str], introspect: Callable[[str], Optional[str]]) -> KaggleAuth:
    """`introspect(token)` -> the token's username, or None when Kaggle says it is inactive."""
    token, source = find_token(environ)
    if token:
        user = introspect(token)
        if user:
            return KaggleAuth(user, token=token, source=source)
    user, key, legacy_source = find_legacy(environ)
    if user and key:
        return KaggleAuth(user, key=key, source=legacy_source)
    if token:
        raise AuthFailed(f"kaggle: the API token from {source} was refused (inactive or expired)", TOKEN_HINT)
    raise ProviderError("no Kaggle credentials", TOKEN_HINT)
