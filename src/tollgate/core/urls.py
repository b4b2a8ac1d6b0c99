"""Where clients reach this server: the base URL named in challenges, resource metadata and
the OAuth authorization server's metadata (never a forged ``Host``)."""

from __future__ import annotations

from starlette.types import Scope

from tollgate.core.settings import Settings


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
    host = header(scope, b"host")
    if host_allowed(host, settings.allowed_hosts):
        scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
        return f"{scheme}://{host}"
    return default_base_url(settings)


def header(scope: Scope, name: bytes) -> str:
    """The first value of header ``name`` (lower-case bytes) in an ASGI scope, or ``""``."""
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return ""
