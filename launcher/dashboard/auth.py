"""Who may talk to the dashboard: it listens on 127.0.0.1 only, every request needs the
one-time token (the URL `tether ui` prints, then an HttpOnly SameSite=Strict cookie), the Host
header must be this server's own (no DNS rebinding), and an action (POST) needs the token in
a header and an Origin of this server: another site open in the same browser can neither
read the data nor press a button."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Optional

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

COOKIE = "tether_token"
HEADER = "x-tether-token"


@dataclass(frozen=True)
class Gate:
    token: str
    port: int

    @property
    def hosts(self) -> tuple:
        return (f"127.0.0.1:{self.port}", f"localhost:{self.port}")

    @property
    def origins(self) -> tuple:
        return tuple(f"http://{h}" for h in self.hosts)

    def _matches(self, given: Optional[str]) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())

    def refusal(self, request: Request) -> Optional[Response]:
        """None when the request may go on; else the 403 (or the redirect that sets the cookie)."""
        if request.headers.get("host") not in self.hosts:
            return _forbidden("unknown Host header")
        query_token = request.query_params.get("token")
        if request.method == "GET" and self._matches(query_token):
            return self._welcome(request)
        if request.method in ("GET", "HEAD"):
            if self._matches(request.cookies.get(COOKIE)) or self._matches(request.headers.get(HEADER)):
                return None
            return _forbidden("no token: open the address `tether ui` printed")
        if request.method != "POST":
            return _forbidden("method not allowed")
        if not self._matches(request.headers.get(HEADER)):
            return _forbidden("an action needs the token header")
        if request.headers.get("origin") not in self.origins:
            return _forbidden("cross-origin action refused")
        if request.headers.get("sec-fetch-site") not in (None, "same-origin"):
            return _forbidden("cross-site action refused")
        return None

    def _welcome(self, request: Request) -> Response:
        """The token from the printed URL becomes a cookie, and leaves the address bar."""
        url = request.url.remove_query_params("token")
        response = RedirectResponse(str(url.replace(scheme="http")), status_code=303)
        response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict", path="/")
        return response


def _forbidden(why: str) -> Response:
    return PlainTextResponse(f"403 forbidden: {why}\n", status_code=403)
