"""Who this Tollgate is: the base URL it names in challenges and metadata (never a forged
``Host``), and the identity it reports to MCP clients so it can recognise itself upstream."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from starlette.types import Scope

from tollgate.core.settings import Settings
from tollgate.core.urls import default_base_url, host_allowed, public_base_url

__all__ = [
    "GATEWAY_EXTENSION",
    "default_base_url",
    "gateway_id",
    "host_allowed",
    "identity_extension",
    "public_base_url",
    "reported_gateway_id",
    "served_at",
]

GATEWAY_EXTENSION = "io.tollgate/gateway"
"""The capability extension under which ``/mcp`` reports this deployment's id."""


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


def served_at(scope: Scope) -> tuple[str, int] | None:
    """The address and port a request came in on: one of this server's own (never an
    upstream's)."""
    server = scope.get("server")
    return (str(server[0]), int(server[1])) if server and server[1] else None
