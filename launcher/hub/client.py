"""The laptop's side of the Hugging Face Hub. There is one Hub client, the agent's
(agent/hub_client.py, agent/hub_upload.py, agent/hub_mirror.py): the laptop runs the same
verbs with its own Python (`python -m agent hub-check|hub-newest|hub-upload|hub-fetch`), and
the host runs them for `--from-host` and the backup mirror. Here: the token, those local
runs, and their answers mapped to tether's errors, in this one place."""

from __future__ import annotations

import json
import sys
from typing import Any, Dict, Mapping, Optional

from launcher.errors import AuthError, RemoteError, UsageError
from launcher.transport.agent_client import AgentClient
from launcher.transport.bootstrap import local_runtime_dir
from launcher.transport.host import LocalHost


def hub_token(environ: Mapping[str, str]) -> str:
    token = environ.get("HF_TOKEN")
    if not token:
        try:
            from huggingface_hub import get_token
        except ImportError:
            raise UsageError("this needs huggingface_hub", "pip install 'tether[hub]'") from None
        token = get_token()
    if not token:
        raise AuthError("no Hugging Face token", "export HF_TOKEN=..., or log in with `hf auth login`")
    return token


def xet_disabled(environ: Mapping[str, str]) -> Optional[bool]:
    value = environ.get("HF_HUB_DISABLE_XET")
    return None if value is None else value.strip().lower() in ("1", "true", "yes", "on")


def request(environ: Mapping[str, str], repo: str, **more: Any) -> Dict[str, Any]:
    """What a Hub verb reads on its stdin (the token travels only there)."""
    return {"token": hub_token(environ), "repo": repo, "endpoint": environ.get("HF_ENDPOINT") or None,
            "disable_xet": xet_disabled(environ), **more}


def here() -> AgentClient:
    """The agent's verbs run by this laptop's own Python."""
    return AgentClient(LocalHost(), sys.executable, local_runtime_dir())


def run_here(verb: str, req: Dict[str, Any], *args: str, timeout: float = 24 * 3600) -> Dict[str, Any]:
    return here().call(verb, *args, input=json.dumps(req).encode(), timeout=timeout)


def answered(answer: Any, repo: str, doing: str, again: str) -> Dict[str, Any]:
    """A Hub verb's answer, or its failure as tether's one-line error: a bad name, a refused
    token, no library, the network (`doing` says what was under way, `again` what to do)."""
    if not isinstance(answer, dict):
        raise RemoteError(f"{doing} {repo}: the answer was not understood", again)
    if answer.get("ok"):
        return answer
    kind, status, error = answer.get("kind"), answer.get("status"), str(answer.get("error") or "")[:300]
    if kind == "invalid":
        raise UsageError(f"{repo!r} is not a valid repo name ({error})",
                         "use user/name with letters, digits, '-', '_' or '.'")
    if kind == "auth":
        raise AuthError(f"the Hub refused the token ({status})", "check HF_TOKEN (it needs write access)")
    if kind == "usage" or answer.get("no_library"):
        raise UsageError(error, "pip install 'tether[hub]' (on the host: pip install huggingface_hub)")
    raise RemoteError(f"{doing} {repo} failed ({status or 'network'}: {error})", again)
