"""One small JSON-over-HTTP client for the REST providers: bearer auth, a base URL that
TETHER_<PROVIDER>_URL overrides, backoff on 429/503, and errors read leniently (providers
answer {"error"}, {"msg"}, {"message"} or plain text)."""

from __future__ import annotations

import time
from typing import Any, Mapping, Optional

import httpx

from .base import AuthFailed, ProviderError


class RestClient:
    def __init__(self, provider: str, base_url: str, api_key: str, *, timeout: float = 30.0,
                 tries: int = 4, first_backoff_s: float = 0.15, factor: float = 1.5) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(timeout=timeout, headers={"Authorization": f"Bearer {api_key}",
                                                              "Accept": "application/json"})
        self.tries, self.first_backoff_s, self.factor = tries, first_backoff_s, factor

    def request(self, method: str, path: str, *, json: Any = None, params: Optional[Mapping[str, Any]] = None,
                ok_statuses: tuple = ()) -> Any:
        url = f"{self.base_url}{path}"
        delay = self.first_backoff_s
        for attempt in range(self.tries):
            try:
                resp = self._client.request(method, url, json=json, params=params)
            except httpx.HTTPError as exc:
                if attempt + 1 == self.tries:
                    raise ProviderError(f"{self.provider}: cannot reach {self.base_url} ({exc})",
                                        "check the network, or TETHER_*_URL if you set it") from None
                time.sleep(delay)
                delay *= self.factor
                continue
            if resp.status_code in (429, 503) and attempt + 1 < self.tries:
                wait = _retry_after(resp) or delay
                time.sleep(wait)
                delay *= self.factor
                continue
            if resp.status_code in ok_statuses:
                return _body(resp)
            if resp.status_code in (401, 403):
                raise AuthFailed(f"{self.provider}: the API key was refused ({resp.status_code}: {_message(resp)})",
                                 f"check your {self.provider} API key")
            if resp.status_code >= 400:
                raise ProviderError(f"{self.provider}: {method} {path} failed ({resp.status_code}: {_message(resp)})")
            return _body(resp)
        raise ProviderError(f"{self.provider}: {method} {path} kept failing")  # pragma: no cover

    def close(self) -> None:
        self._client.close()


def _retry_after(resp: httpx.Response) -> Optional[float]:
    try:
        return min(30.0, float(resp.headers.get("Retry-After", "")))
    except ValueError:
        return None


def _body(resp: httpx.Response) -> Any:
    if not resp.content.strip():
        return {}
    try:
        return resp.json()
    except ValueError:
        return {"text": resp.text}


def _message(resp: httpx.Response) -> str:
    body = _body(resp)
    if isinstance(body, dict):
        for key in ("msg", "message", "error", "reason", "text"):
            if body.get(key):
                return str(body[key])[:200]
    return resp.text[:200] or resp.reason_phrase
