"""Providers by name. Credentials are handed in by the caller (the launcher reads them)."""

from __future__ import annotations

from typing import Optional

from .base import Provider, ProviderError

RENTED = ("vast", "novita")
API_KEY_ENV = {"vast": "VAST_API_KEY", "novita": "NOVITA_API_KEY"}


def rented_provider(name: str, api_key: Optional[str], poll_s: float = 5.0, pace_scale: float = 1.0,
                    create_timeout_s: Optional[float] = None) -> Provider:
    """pace_scale shrinks the providers' rate-limit gaps and backoffs (tests only);
    create_timeout_s bounds the wait for a rent answer (Vast's own client allows 120 s)."""
    if name not in RENTED:
        raise ProviderError(f"provider {name!r} cannot rent hosts", f"use one of {', '.join(RENTED)}")
    if not api_key:
        raise ProviderError(f"no API key for {name}",
                            f"export {API_KEY_ENV[name]}=... or run `tether login {name}`")
    if name == "vast":
        from .vast import VastProvider
        from .vast import CREATE_TIMEOUT_S
        return VastProvider(api_key, poll_s=poll_s, pace_scale=pace_scale,
                            create_timeout_s=create_timeout_s or CREATE_TIMEOUT_S)
    from .novita import NovitaProvider
    return NovitaProvider(api_key, poll_s=poll_s, pace_scale=pace_scale)
