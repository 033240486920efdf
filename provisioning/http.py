"""One small JSON-over-HTTP client for the REST providers: bearer auth, a base URL that
TETHER_<PROVIDER>_URL overrides, calls spaced per endpoint, 429s backed off over seconds, and
errors read leniently (providers answer {"error"}, {"msg"}, {"message"}, {"detail"} or plain
text) but typed: every ProviderError carries the HTTP status and the provider's error code."""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Mapping, Optional

import httpx

from .base import AnswerLost, AuthFailed, ProviderError, RateLimited

# Transport failures after which the server cannot have seen the request: always safe to retry.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)


class Pace:
    """Minimum gaps between calls to each endpoint (the provider's published figures), and how
    long to back off after a 429. `scale` shrinks every figure (tests); clock and sleep are
    injectable so the waits can be checked without waiting."""

    def __init__(self, gaps: Optional[Mapping[str, float]] = None, penalties: Optional[Mapping[str, float]] = None,
                 *, scale: float = 1.0, first_backoff_s: float = 1.0, max_backoff_s: float = 60.0,
                 budget_s: float = 300.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.gaps, self.penalties = dict(gaps or {}), dict(penalties or {})
        self.scale, self.first_backoff_s, self.max_backoff_s = scale, first_backoff_s, max_backoff_s
        self.budget_s, self.clock, self.sleep = budget_s, clock, sleep
        self._last: Dict[str, float] = {}

    def wait_turn(self, endpoint: str) -> None:
        gap = self.gaps.get(endpoint, 0.0) * self.scale * 1.05  # a little slack for the way there
        last = self._last.get(endpoint)
        if last is not None and gap > 0:
            wait = last + gap - self.clock()
            if wait > 0:
                self.sleep(wait)
        self._last[endpoint] = self.clock()

    def backoff(self, endpoint: str, attempt: int) -> float:
        """Seconds to wait before retry `attempt` (0, 1, ...) of a rate-limited call: at least
        the endpoint's gap plus its penalty, doubling, capped."""
        base = max(self.first_backoff_s, self.gaps.get(endpoint, 0.0) + self.penalties.get(endpoint, 0.0))
        return min(self.max_backoff_s, base * 2 ** attempt) * self.scale


class RestClient:
    def __init__(self, provider: str, base_url: str, api_key: str, *, timeout: float = 30.0,
                 pace: Optional[Pace] = None, headers: Optional[Mapping[str, str]] = None,
                 tries: int = 4) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.pace = pace or Pace()
        self.tries = tries
        self._client = httpx.Client(timeout=timeout, headers={"Authorization": f"Bearer {api_key}",
                                                              "Accept": "application/json", **(headers or {})})

    def request(self, method: str, path: str, *, endpoint: Optional[str] = None, json: Any = None,
                params: Optional[Mapping[str, Any]] = None, repeatable: bool = True,
                timeout: Optional[float] = None) -> Any:
        """`repeatable=False` (renting): a request whose answer was lost is never sent again;
        AnswerLost says so and the caller looks for what it may have made."""
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        endpoint = endpoint or f"{method} {path}"
        waited, limited, failures = 0.0, 0, 0
        while True:
            self.pace.wait_turn(endpoint)
            try:
                resp = self._client.request(method, url, json=json, params=params,
                                            **({"timeout": timeout} if timeout else {}))
            except httpx.HTTPError as exc:
                failures += 1
                if not repeatable and not isinstance(exc, _NOT_SENT):
                    raise AnswerLost(f"{self.provider}: {method} {path} got no answer ({type(exc).__name__})") from None
                if failures >= self.tries:
                    raise ProviderError(f"{self.provider}: cannot reach {self.base_url} ({exc})",
                                        "check the network, or TETHER_*_URL if you set it") from None
                self.pace.sleep(self.pace.backoff(endpoint, failures - 1))
                continue
            if resp.status_code in (429, 503):
                wait = _retry_after(resp) or self.pace.backoff(endpoint, limited)
                if waited + wait > self.pace.budget_s * self.pace.scale:
                    raise RateLimited(f"{self.provider}: {method} {path} still rate-limited after {waited:.0f}s "
                                      f"({resp.status_code}: {_message(resp)})", "try again in a minute",
                                      status=resp.status_code, code=_code(resp))
                self.pace.sleep(wait)
                waited, limited = waited + wait, limited + 1
                continue
            return self._answer(resp, method, path)

    def _answer(self, resp: httpx.Response, method: str, path: str) -> Any:
        if resp.status_code in (401, 403):
            raise AuthFailed(f"{self.provider}: the API key was refused ({resp.status_code}: {_message(resp)})",
                             f"check your {self.provider} API key", status=resp.status_code, code=_code(resp))
        if resp.status_code >= 400:
            raise ProviderError(f"{self.provider}: {method} {path} failed ({resp.status_code}: {_message(resp)})",
                                status=resp.status_code, code=_code(resp))
        return _body(resp)

    def close(self) -> None:
        self._client.close()


def _retry_after(resp: httpx.Response) -> Optional[float]:
    try:
        return min(60.0, float(resp.headers.get("Retry-After", "")))
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
        for key in ("msg", "message", "detail", "error", "reason", "text"):
            if body.get(key):
                return str(body[key])[:200]
    return resp.text[:200] or resp.reason_phrase


def _code(resp: httpx.Response) -> Optional[str]:
    """The provider's error code: Vast's "error" (no_such_ask), Novita's "reason"."""
    body = _body(resp)
    if isinstance(body, dict):
        for key in ("error", "reason"):
            if isinstance(body.get(key), str) and body[key]:
                return body[key]
    return None
