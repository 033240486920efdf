"""The Hub client for the verbs that talk to it from the host (hub-upload, hub-mirror).
huggingface_hub is imported only here, when such a verb runs, so the agent itself still needs
nothing but the standard library. Requests come on stdin: the token never touches argv."""

from __future__ import annotations

from typing import Any, Dict


def api_for(req: Dict[str, Any], what: str):
    """An HfApi for the request's endpoint and token. `what` names the feature for the
    message when the library is missing."""
    try:
        from huggingface_hub import HfApi, constants
        from huggingface_hub.utils import disable_progress_bars
    except ImportError:
        raise ValueError(f"huggingface_hub is not installed on the host, which {what} needs: "
                         "install it there (add `pip install huggingface_hub` to the spec's setup)") from None
    if req.get("disable_xet") is not None:  # read at import by the library: apply it as asked now
        constants.HF_HUB_DISABLE_XET = bool(req["disable_xet"])
    disable_progress_bars()
    return HfApi(endpoint=req.get("endpoint") or None, token=req["token"])


def keep_memory_private() -> None:
    """These verbs hold a Hub token: no core dumps, no ptrace or /proc/<pid>/mem|environ for
    the workload (same user). Linux only; a root workload can still read anything."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError):
        pass


def failure(exc: BaseException) -> Dict[str, Any]:
    """Whatever the library raised, as an answer the launcher maps to its errors in one place:
    {"ok": False, "kind": auth | invalid | network | http, "status": N or None, "error": line}."""
    try:
        from huggingface_hub.errors import HfHubHTTPError, HFValidationError
    except ImportError:  # pragma: no cover - no library: api_for said so already
        return {"ok": False, "kind": "http", "status": None, "error": str(exc)[:300]}
    if isinstance(exc, HFValidationError):
        return {"ok": False, "kind": "invalid", "status": None, "error": str(exc).splitlines()[0][:300]}
    # The library wraps a failed LFS upload in a RuntimeError; the HTTP error is its cause.
    http = exc if isinstance(exc, HfHubHTTPError) else exc.__cause__
    response = getattr(http, "response", None)
    status = getattr(response, "status_code", None) if isinstance(http, HfHubHTTPError) else None
    if status in (401, 403) and http is exc:  # the Hub itself refused, not its file storage
        kind = "auth"
    elif status is None:
        kind = "network"
    else:
        kind = "http"
    detail = str(http or exc).splitlines()[0] if str(http or exc) else type(exc).__name__
    return {"ok": False, "kind": kind, "status": status, "error": f"{type(exc).__name__}: {detail}"[:300]
            if kind == "network" else detail[:300]}


def one_line(exc: BaseException) -> str:
    """Whatever the library raised, as `status: first line` (the LFS errors it wraps in a
    RuntimeError carry the HTTP error as their cause)."""
    cause = exc.__cause__ or exc
    status = getattr(getattr(cause, "response", None), "status_code", None)
    text = str(cause).splitlines()[0] if str(cause) else ""
    return f"{status or type(cause).__name__}: {text}"
