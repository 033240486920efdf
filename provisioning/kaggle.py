"""Kaggle batch kernels through kagglesdk, the official `kaggle` package's client (imported
lazily: some versions authenticate at import time). KAGGLE_API_ENVIRONMENT=TEST points it at
http://localhost:7777, where the tests' fake listens.

Credentials: KAGGLE_USERNAME + KAGGLE_KEY, or ~/.kaggle/kaggle.json, or KAGGLE_API_TOKEN."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Mapping, Optional, Tuple

from .base import AuthFailed, ProviderError

TERMINAL = ("COMPLETE", "ERROR", "CANCEL_ACKNOWLEDGED")


@dataclass(frozen=True)
class KernelOutput:
    files: List[Tuple[str, str]]   # (file name as Kaggle gives it: untrusted, url)
    log: str


def credentials(environ: Mapping[str, str]) -> Tuple[Optional[str], Optional[str], Optional[str]]:
    """(username, key, api_token) from the environment or ~/.kaggle/kaggle.json."""
    user, key, token = environ.get("KAGGLE_USERNAME"), environ.get("KAGGLE_KEY"), environ.get("KAGGLE_API_TOKEN")
    path = Path(environ.get("KAGGLE_CONFIG_DIR", "~/.kaggle")).expanduser() / "kaggle.json"
    if not (user and (key or token)) and path.is_file():
        data = json.loads(path.read_text())
        user, key = user or data.get("username"), key or data.get("key")
    return user, key, token


class KaggleKernels:
    name = "kaggle"

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.user, self.key, self.token = credentials(environ)
        if not self.user or not (self.key or self.token):
            raise ProviderError("no Kaggle credentials",
                                "export KAGGLE_USERNAME and KAGGLE_KEY, or put kaggle.json in ~/.kaggle")

    def _call(self, method: str, request):
        try:
            from kagglesdk import KaggleClient
            from kagglesdk.kaggle_env import get_env
        except ImportError:
            raise ProviderError("the Kaggle client is not installed", "pip install 'tether[kaggle]'") from None
        import requests

        try:
            with KaggleClient(env=get_env(), username=self.user, password=self.key, api_token=self.token) as k:
                return getattr(k.kernels.kernels_api_client, method)(request)
        except requests.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else None
            if code in (401, 403):
                raise AuthFailed(f"kaggle: credentials refused ({code})", "check KAGGLE_USERNAME/KAGGLE_KEY") from None
            raise ProviderError(f"kaggle: {method} failed ({code}: {exc})") from None
        except requests.RequestException as exc:
            raise ProviderError(f"kaggle: cannot reach the API ({exc})") from None

    def push(self, slug: str, title: str, script: str, accelerator: Optional[str], timeout_s: int) -> str:
        from kagglesdk.kernels.types.kernels_api_service import ApiSaveKernelRequest

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
        return resp.ref or r.slug

    def _ref(self, request, slug: str):
        request.user_name, request.kernel_slug = self.user, slug
        return request

    def status(self, slug: str) -> Tuple[str, str]:
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
                return KernelOutput(files, log)

    def cancel(self, slug: str) -> None:
        from kagglesdk.kernels.types.kernels_api_service import ApiCancelKernelSessionRequest

        self._call("cancel_kernel_session", self._ref(ApiCancelKernelSessionRequest(), slug))

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
