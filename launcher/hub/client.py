"""The laptop's side of the Hugging Face Hub: the token, the client, and the library's errors
as one line each. Shared by publish and the Hub backup mirror."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator, Mapping, Optional

from launcher.errors import AuthError, RemoteError, UsageError


def hub_token(environ: Mapping[str, str]) -> str:
    token = environ.get("HF_TOKEN")
    if not token:
        from huggingface_hub import get_token
        token = get_token()
    if not token:
        raise AuthError("no Hugging Face token", "export HF_TOKEN=..., or log in with `hf auth login`")
    return token


def xet_disabled(environ: Mapping[str, str]) -> Optional[bool]:
    value = environ.get("HF_HUB_DISABLE_XET")
    return None if value is None else value.strip().lower() in ("1", "true", "yes", "on")


def hub_api(environ: Mapping[str, str]):
    """An HfApi for HF_ENDPOINT (or the Hub) with the user's token. huggingface_hub reads
    HF_HUB_DISABLE_XET once, when first imported (transformers may have imported it long
    before): the switch is applied as the environment says now."""
    try:
        from huggingface_hub import HfApi, constants
    except ImportError:
        raise UsageError("this needs huggingface_hub", "pip install 'tether[hub]'") from None
    token = hub_token(environ)
    disabled = xet_disabled(environ)
    if disabled is not None:
        constants.HF_HUB_DISABLE_XET = disabled
    if not sys.stderr.isatty():  # the library's bars are for people; keep logs and pipes clean
        from huggingface_hub.utils import disable_progress_bars
        disable_progress_bars()
    return HfApi(endpoint=environ.get("HF_ENDPOINT") or None, token=token)


@contextmanager
def hub_errors(repo: str, doing: str, again: str) -> Iterator[None]:
    """The library's exceptions as tether's one-line errors: a bad name, a refused token, the
    network (`doing` says what was under way, `again` what to do next)."""
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError

    try:
        yield
    except HFValidationError as exc:
        raise UsageError(f"{repo!r} is not a valid repo name ({str(exc).splitlines()[0]})",
                         "use user/name with letters, digits, '-', '_' or '.'") from None
    except (HfHubHTTPError, RuntimeError) as exc:
        # The library wraps a failed LFS upload in a RuntimeError; the HTTP error is its cause.
        http = exc if isinstance(exc, HfHubHTTPError) else exc.__cause__
        status = http.response.status_code if isinstance(http, HfHubHTTPError) and http.response is not None else None
        detail = str(http or exc).splitlines()[0]
        if status in (401, 403) and http is exc:  # the Hub itself, not its file storage
            raise AuthError(f"the Hub refused the token ({status})",
                            "check HF_TOKEN (it needs write access)") from None
        raise RemoteError(f"{doing} {repo} failed ({status or 'network'}: {detail})", again) from None
    except OSError as exc:
        raise RemoteError(f"{doing} {repo} failed ({exc})", again) from None
    except Exception as exc:
        # The HTTP client's own transport errors (a dropped connection, a timeout); which
        # client the library uses changes between its versions.
        if type(exc).__module__.split(".")[0] not in ("httpx", "httpx2", "requests", "urllib3"):
            raise
        raise RemoteError(f"{doing} {repo} failed (network: {type(exc).__name__}: {exc})", again) from None
