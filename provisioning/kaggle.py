"""Kaggle batch kernels through kagglesdk, the official `kaggle` package's client (imported
lazily, and only on Python >= 3.11, which it needs). KAGGLE_API_ENVIRONMENT=TEST points it at
http://localhost:7777, where the tests' fake listens. Credentials: kaggle_auth.py.

What Kaggle's own sources say, and this module follows:
- the session's maximum run time: 12 h for CPU and GPU sessions, 9 h for TPU (kaggle.com/docs/
  notebooks, "Technical specifications"); a longer sessionTimeoutSeconds is not asked for.
- CancelKernelSession takes one field, kernelSessionId (kagglesdk 0.1.37 kernels_api_service
  ApiCancelKernelSessionRequest); no public call returns that id for a pushed kernel.
- the session log (ListKernelSessionOutput.log) is a JSON array of {stream_name, time, data}
  (Kaggle/kaggle-cli kaggle_api_extended.py `_iter_blob_lines`, v2.2.3)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Mapping, Optional, Tuple

from .base import AuthFailed, ProviderError
from .kaggle_auth import KaggleAuth, require_sdk, resolve

TERMINAL = ("COMPLETE", "ERROR", "CANCEL_ACKNOWLEDGED")
GPU_SESSION_MAX_S = 12 * 3600
TPU_SESSION_MAX_S = 9 * 3600


def session_max_s(accelerator: Optional[str]) -> int:
    return TPU_SESSION_MAX_S if (accelerator or "").lower().startswith("tpu") else GPU_SESSION_MAX_S


@dataclass(frozen=True)
class KernelOutput:
    files: List[Tuple[str, str]]   # (file name as Kaggle gives it: untrusted, url)
    log: str                       # the session's log as text


@dataclass(frozen=True)
class Pushed:
    ref: str
    version: Optional[int]


def log_text(raw: Optional[str]) -> str:
    """The session log as text: the `data` of each {stream_name, time, data} entry, in order.
    Anything else (an older or unknown shape) is shown as it came."""
    if not raw:
        return ""
    try:
        entries = json.loads(raw)
    except ValueError:
        return raw
    if not isinstance(entries, list):
        return raw
    parts = []
    for e in entries:
        data = e.get("data") if isinstance(e, dict) else None
        if isinstance(data, str):
            parts.append(data if data.endswith("\n") else data + "\n")
    return "".join(parts)


class KaggleKernels:
    name = "kaggle"

    def __init__(self, environ: Mapping[str, str]) -> None:
        require_sdk()
        self.auth: KaggleAuth = resolve(environ, self._introspect)
        self.user = self.auth.username

    def _client(self, token: Optional[str] = None):
        from kagglesdk import KaggleClient
        from kagglesdk.kaggle_env import get_env

        if token:
            return KaggleClient(env=get_env(), api_token=token)
        return KaggleClient(env=get_env(), username=self.auth.username, password=self.auth.key,
                            api_token=self.auth.token)

    def _introspect(self, token: str) -> Optional[str]:
        from kagglesdk.security.types.oauth_service import IntrospectTokenRequest

        req = IntrospectTokenRequest()
        req.token = token
        try:
            resp = self._send(lambda k: k.security.oauth_client.introspect_token(req), "IntrospectToken",
                              self._client(token))
        except ProviderError as exc:
            if exc.status in (400, 401, 403, 404):  # the CLI reads these as "token invalid"
                return None
            raise
        return resp.username if resp.active and resp.username else None

    def _call(self, method: str, request) -> Any:
        return self._send(lambda k: getattr(k.kernels.kernels_api_client, method)(request), method, self._client())

    @staticmethod
    def _send(fn, what: str, client) -> Any:
        import requests

        try:
            with client as k:
                return fn(k)
        except requests.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else None
            if code in (401, 403):
                raise AuthFailed(f"kaggle: credentials refused ({code})",
                                 "check KAGGLE_API_TOKEN (or KAGGLE_USERNAME/KAGGLE_KEY)", status=code) from None
            raise ProviderError(f"kaggle: {what} failed ({code}: {exc})", status=code) from None
        except requests.RequestException as exc:
            raise ProviderError(f"kaggle: cannot reach the API ({exc})", "check the network") from None

    def push(self, slug: str, title: str, script: str, accelerator: Optional[str], timeout_s: int) -> Pushed:
        from kagglesdk.kernels.types.kernels_api_service import ApiSaveKernelRequest

        if timeout_s > session_max_s(accelerator):
            raise ProviderError(f"kaggle: a session of {timeout_s / 3600:g} h is over Kaggle's "
                                f"{session_max_s(accelerator) // 3600} h maximum",
                                "set host.session_hours to that or less")
        r = ApiSaveKernelRequest()
        r.slug = f"{self.user}/{slug}"
        r.new_title = title
        r.text = script
        r.language = "python"
        r.kernel_type = "script"
        r.is_private = True
        r.enable_gpu = accelerator is not None
        r.enable_internet = True
        r.session_timeout_seconds = timeout_s
        if accelerator:
            r.machine_shape = accelerator
        resp = self._call("save_kernel", r)
        if resp.error:
            raise ProviderError(f"kaggle: push refused: {resp.error}")
        return Pushed(resp.ref or r.slug, resp.version_number)

    def _ref(self, request, slug: str):
        request.user_name, request.kernel_slug = self.user, slug
        return request

    def status(self, slug: str) -> Tuple[str, str]:
        """(status name, failure message); a kernel Kaggle does not know raises with status 404."""
        from kagglesdk.kernels.types.kernels_api_service import ApiGetKernelSessionStatusRequest

        resp = self._call("get_kernel_session_status", self._ref(ApiGetKernelSessionStatusRequest(), slug))
        return resp.status.name, resp.failure_message or ""

    def output(self, slug: str) -> KernelOutput:
        from kagglesdk.kernels.types.kernels_api_service import ApiListKernelSessionOutputRequest

        files, log, token = [], "", None
        while True:
            req = self._ref(ApiListKernelSessionOutputRequest(), slug)
            if token:
                req.page_token = token
            resp = self._call("list_kernel_session_output", req)
            files += [(f.file_name, f.url) for f in resp.files or [] if f and f.file_name and f.url]
            log = log or (resp.log or "")
            token = resp.next_page_token
            if not token:
                return KernelOutput(files, log_text(log))

    def cancel(self, session_id: int) -> None:
        """Cancel one session by its id, the request's only field."""
        from kagglesdk.kernels.types.kernels_api_service import ApiCancelKernelSessionRequest

        req = ApiCancelKernelSessionRequest()
        req.kernel_session_id = int(session_id)
        resp = self._call("cancel_kernel_session", req)
        if resp.error_message:
            raise ProviderError(f"kaggle: cancelling session {session_id} refused: {resp.error_message}")

    def gpu_quota_hours(self) -> Optional[Tuple[float, float]]:
        from kagglesdk.kernels.types.kernels_api_service import ApiGetAcceleratorQuotaStatisticsRequest

        q = self._call("get_accelerator_quota_statistics", ApiGetAcceleratorQuotaStatisticsRequest()).gpu_quota
        if q is None:
            return None
        return q.time_used.total_seconds() / 3600, q.total_time_allowed.total_seconds() / 3600


def download(url: str, dest: Path, timeout: float = 120) -> int:
    """One output file into dest (a .part first, renamed when complete)."""
    import requests

    part = dest.with_name(dest.name + ".tether-part")
    with requests.get(url, stream=True, timeout=timeout) as resp:
        resp.raise_for_status()
        size = 0
        with open(part, "wb") as f:
            for chunk in resp.iter_content(1 << 20):
                f.write(chunk)
                size += len(chunk)
        expected = resp.headers.get("Content-Length")
        if expected is not None and int(expected) != size:
            part.unlink()
            raise ProviderError(f"kaggle: {dest.name} arrived with {size} of {expected} bytes", "pull again")
    os.replace(part, dest)
    return size
