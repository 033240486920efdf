"""Providers by name. Credentials are handed in by the caller (the launcher reads them)."""

from __future__ import annotations

from typing import Optional

from .base import Provider, ProviderError

RENTED = ("vast", "novita")
API_KEY_ENV = {"vast": "VAST_API_KEY", "novita": "NOVITA_API_KEY"}


def rented_provider(name: str, api_key: Optional[str], poll_s: float = 5.0) -> Provider:
    if name not in RENTED:
        raise ProviderError(f"provider {name!r} cannot rent hosts", f"use one of {', '.join(RENTED)}")
    if not api_key:
        raise ProviderError(f"no API key for {name}",
                            f"export {API_KEY_ENV[name]}=... or run `tether login {name}`")
    if name == "vast":
        from .vast import VastProvider
        return VastProvider(api_key, poll_s=poll_s)
    from .novita import NovitaProvider
    return NovitaProvider(api_key, poll_s=poll_s)
