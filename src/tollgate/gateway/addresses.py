"""Who this Tollgate is: the base URL it names in challenges and metadata (never a forged
``Host``), and the identity it reports to MCP clients so it can recognise itself upstream."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from starlette.types import Scope

from tollgate.core.settings import Settings

GATEWAY_EXTENSION = "io.tollgate/gateway"
"""The capability extension under which ``/mcp`` reports this deployment's id."""


def host_allowed(host: str, allowed_hosts: list[str]) -> bool:
    """Whether a ``Host`` header value is one of the allowed hosts (the SDK's own rule:
    an exact entry, or ``name:*`` for any port)."""
    if not host:
        return False
    for allowed in allowed_hosts:
        if host == allowed:
            return True
        if allowed.endswith(":*") and host.startswith(allowed[:-1]):
            return True
    return False


def default_base_url(settings: Settings) -> str:
    """Where this server listens by its settings: ``http://{host}:{port}``."""
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"http://{host}:{settings.port}"


def public_base_url(settings: Settings, scope: Scope) -> str:
    """Where clients reach this server: ``TOLLGATE_PUBLIC_URL``; else the request's own base
    when its ``Host`` is an allowed host; else the settings' listening address."""
    if configured := settings.public_url.rstrip("/"):
        return configured
    host = _header(scope, b"host")
    if host_allowed(host, settings.allowed_hosts):
        scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
        return f"{scheme}://{host}"
    return default_base_url(settings)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return ""


def gateway_id(settings: Settings) -> str:
    """This deployment's id: the same in every process sharing its secret key, and telling
    nothing about the key."""
    key = settings.secret_key.encode() or settings.jwt_secret_key.encode()
    return hmac.new(key, b"tollgate gateway id", hashlib.sha256).hexdigest()[:32]


def identity_extension(settings: Settings) -> dict[str, dict[str, Any]]:
    """The capability extension ``/mcp`` advertises in both eras (initialize and discover)."""
    return {GATEWAY_EXTENSION: {"id": gateway_id(settings)}}


def reported_gateway_id(extensions: dict[str, dict[str, Any]] | None) -> str | None:
    """The Tollgate deployment id an MCP server reports, if it is a Tollgate."""
    reported = (extensions or {}).get(GATEWAY_EXTENSION) or {}
    value = reported.get("id") if isinstance(reported, dict) else None
    return value if isinstance(value, str) else None
