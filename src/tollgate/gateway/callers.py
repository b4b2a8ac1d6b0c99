"""Who sent a ``tools/call`` the forward path may take, and how: the caller's era, what it
declared, and what it may receive during the call.

A request qualifies only when it is exactly what the SDK would accept: anything unusual
(a header the SDK would refuse, a batch, a session of another key, ``Mcp-Param-*`` headers
to validate against the tool's schema) is left to the SDK's server, which answers it as the
protocol says. So the forward path never has to produce a protocol error of its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import anyio
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, authorization_context
from mcp.server.connection import Connection
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecurityMiddleware
from mcp.shared.inbound import (
    MCP_PARAM_HEADER_PREFIX,
    MCP_PROTOCOL_VERSION_HEADER,
    InboundLadderRejection,
    classify_inbound_request,
    find_duplicated_routing_header,
)
from mcp_types import LOG_LEVEL_META_KEY
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from starlette.requests import Request
from starlette.types import Scope

from tollgate.gateway.relay import LOG_LEVEL_STATE_KEY, LOG_LEVELS
from tollgate.gateway.wire import Message

_PARAM_PREFIX = MCP_PARAM_HEADER_PREFIX.lower()

CAPABILITIES_STATE_KEY = "tollgate/capabilities"
"""Where a handshake-era session's declared capabilities are kept as plain JSON."""


@dataclass(frozen=True)
class CallerWire:
    """A caller's ``tools/call`` as it arrived."""

    modern: bool
    protocol_version: str
    request_id: Any
    params: Message
    capabilities: Message
    client_info: Message | None
    log_level: str | None
    """The least severe log level the caller asked for (a 2026-07-28 caller gets none
    unless it asked; a handshake-era one everything unless it set a level)."""
    session_id: str | None = None
    connection: Connection | None = None
    """A handshake-era caller's session, as the SDK keeps it."""

    @property
    def can_be_asked(self) -> bool:
        """A handshake-era caller that declared sampling, elicitation or roots: an upstream
        may ask it questions during the call (the SDK's path relays them)."""
        return not self.modern and any(
            self.capabilities.get(asked) is not None
            for asked in ("sampling", "elicitation", "roots")
        )

    @property
    def wants_progress(self) -> bool:
        """Whether the caller asked for progress notifications."""
        meta = self.params.get("_meta")
        return isinstance(meta, dict) and meta.get("progressToken") is not None


def header_map(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name (the last of repeated ones)."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}


def is_tool_call(message: Message) -> bool:
    """Whether a decoded body is one well-formed ``tools/call`` request."""
    if message.get("jsonrpc") != "2.0":
        return False
    request_id = message.get("id")
    params = message.get("params")
    return not (
        message.get("method") != "tools/call"
        or isinstance(request_id, bool)
        or not isinstance(request_id, str | int)
        or not isinstance(params, dict)
        or not isinstance(params.get("name"), str)
        or not isinstance(params.get("arguments", {}), dict)
    )


def _accepts_both(headers: dict[str, str]) -> bool:
    kinds = {part.split(";")[0].strip().lower() for part in headers.get("accept", "").split(",")}
    if "*/*" in kinds:
        return True
    json_ok = bool(kinds & {"application/json", "application/*"})
    return json_ok and bool(kinds & {"text/event-stream", "text/*"})


def _log_level(value: Any) -> str | None:
    return value if value in LOG_LEVELS else None


class CallerReader:
    """Reads callers out of requests, with the SDK's own rules and sessions."""

    def __init__(
        self, manager: StreamableHTTPSessionManager, security: TransportSecurityMiddleware
    ) -> None:
        self.manager = manager
        self.security = security
        self.connections: dict[str, Connection] = {}
        """Handshake-era sessions by id, registered as their requests pass the server."""

    def register(self, connection: Connection) -> None:
        """Remember a handshake-era session (until it ends)."""
        session_id = connection.session_id
        if session_id is None or self.connections.get(session_id) is connection:
            return
        self.connections[session_id] = connection
        connection.exit_stack.callback(self.connections.pop, session_id, None)

    async def read(
        self, scope: Scope, headers: dict[str, str], message: Message
    ) -> CallerWire | None:
        """The caller of ``message`` if the forward path may serve it, else None."""
        if not _accepts_both(headers) or any(h.startswith(_PARAM_PREFIX) for h in headers):
            return None
        if await self.security.validate_request(Request(scope), is_post=True) is not None:
            return None
        version = headers.get(MCP_PROTOCOL_VERSION_HEADER)
        if version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
            return self._modern(scope, headers, message)
        return self._legacy(scope, headers, message, version)

    def _modern(self, scope: Scope, headers: dict[str, str], message: Message) -> CallerWire | None:
        raw = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        if MCP_SESSION_ID_HEADER in headers or find_duplicated_routing_header(raw) is not None:
            return None
        verdict = classify_inbound_request(message, headers=headers)
        if isinstance(verdict, InboundLadderRejection):
            return None
        if verdict.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            return None
        capabilities = verdict.client_capabilities
        info = verdict.client_info
        params: Message = message["params"]
        return CallerWire(
            modern=True,
            protocol_version=verdict.protocol_version,
            request_id=message["id"],
            params=params,
            capabilities=capabilities if isinstance(capabilities, dict) else {},
            client_info=info if isinstance(info, dict) else None,
            log_level=_log_level(params["_meta"].get(LOG_LEVEL_META_KEY)),
        )

    def _legacy(
        self, scope: Scope, headers: dict[str, str], message: Message, version: str | None
    ) -> CallerWire | None:
        session_id = headers.get(MCP_SESSION_ID_HEADER)
        connection = self.connections.get(session_id) if session_id else None
        if session_id is None or connection is None or not self._owned(session_id, scope):
            return None
        if not connection.initialize_accepted:  # the SDK's own gate for requests
            return None
        if version is not None and version != connection.protocol_version:
            return None
        params = connection.client_params
        info = params.client_info.model_dump(by_alias=True, exclude_none=True) if params else None
        return CallerWire(
            modern=False,
            protocol_version=connection.protocol_version,
            request_id=message["id"],
            params=message["params"],
            capabilities=_capabilities(connection),
            client_info=info,
            log_level=_log_level(connection.state.get(LOG_LEVEL_STATE_KEY)),
            session_id=session_id,
            connection=connection,
        )

    def _owned(self, session_id: str, scope: Scope) -> bool:
        """Whether the SDK serves this session here, to the credential that opened it."""
        # The SDK keeps its sessions and their owners in private maps, with no accessor.
        transport = self.manager._server_instances.get(session_id)
        user = scope.get("user")
        if transport is None or transport.is_terminated or not isinstance(user, AuthenticatedUser):
            return False
        return self.manager._session_owners.get(session_id) == authorization_context(user)

    @contextmanager
    def in_flight(self, caller: CallerWire) -> Iterator[None]:
        """Count a forwarded request as the session's traffic, as the SDK counts its own: a
        session busy only with forwarded calls must not expire as idle."""
        transport = self.manager._server_instances.get(caller.session_id or "")
        scope = transport.idle_scope if transport is not None else None
        timeout = transport._idle_timeout if transport is not None else None
        if transport is None or scope is None or timeout is None:
            yield
            return
        transport._requests_in_flight += 1
        scope.deadline = math.inf
        try:
            yield
        finally:
            transport._requests_in_flight -= 1
            if not transport._requests_in_flight:
                scope.deadline = anyio.current_time() + timeout


def _capabilities(connection: Connection) -> Message:
    """A session's declared capabilities as JSON (worked out once per session)."""
    cached = connection.state.get(CAPABILITIES_STATE_KEY)
    if isinstance(cached, dict):
        return cached
    declared = connection.client_capabilities
    plain = declared.model_dump(by_alias=True, exclude_none=True) if declared else {}
    connection.state[CAPABILITIES_STATE_KEY] = plain
    return plain
