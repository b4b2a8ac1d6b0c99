"""Agents' data access in one process: the source, who may connect, what gets recorded."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from tollgate.accounts.keys import KeyStore
from tollgate.core.crypto import constant_time_equal
from tollgate.core.settings import Settings
from tollgate.data.protocol import READ_ACTIONS, WRITE_ACTIONS, Handler
from tollgate.data.source import DataSource
from tollgate.gateway.events import Observers, ToolCallEvent

WS_UPSTREAM = "data-ws"
"""How WebSocket requests are named in usage events (tools calls are ``data``)."""


@dataclass(frozen=True)
class Agent:
    """Who opened a data connection: the shared MCP_TOKEN, or an account's key."""

    account_id: int
    user_id: int
    connection_id: str


class DataAccess:
    """The data source with its protocol handler, authentication and recording."""

    def __init__(self, settings: Settings, keys: KeyStore, observers: Observers) -> None:
        self.settings = settings
        self.keys = keys
        self.observers = observers
        self.source = DataSource(
            settings.resolved_data_url,
            settings.mcp_allowed_models,
            settings.sensitive_field_patterns,
        )
        self.handler = Handler(self.source, readonly=settings.mcp_readonly)

    async def authenticate(self, token: str | None) -> Agent | None:
        """The agent behind ``token``, or None when it is missing or invalid."""
        connection_id = uuid.uuid4().hex
        if not token:
            return None
        if self.settings.mcp_token and constant_time_equal(token, self.settings.mcp_token):
            return Agent(0, 0, connection_id)
        identity = await self.keys.identify(token)
        if identity is None:
            return None
        return Agent(identity.account_id, identity.user_id, connection_id)

    def record(
        self, agent: Agent, request: object, reply: dict[str, object], started: float
    ) -> None:
        """Hand one request to the observers (analytics), with its latency."""
        action = request.get("action") if isinstance(request, dict) else None
        model = request.get("model") if isinstance(request, dict) else None
        # Labels come from a fixed set, never from what a client typed: bounded series.
        known = isinstance(action, str) and action in READ_ACTIONS | WRITE_ACTIONS
        action = action if known else "invalid"
        model = (
            model if isinstance(model, str) and model in self.settings.mcp_allowed_models else "-"
        )
        self.observers.emit(
            ToolCallEvent(
                request_id=str(reply.get("id") or uuid.uuid4().hex),
                account_id=agent.account_id,
                user_id=agent.user_id,
                upstream=WS_UPSTREAM,
                tool=f"{action}:{model}",
                credits=0,
                success=reply.get("status") == "ok",
                is_backend_error=False,
                error_code=None if reply.get("status") == "ok" else "request_refused",
                latency_ms=(time.perf_counter() - started) * 1000,
                protocol_version="ws",
                session_id=agent.connection_id,
            )
        )

    async def close(self) -> None:
        """Release the data source's connections."""
        await self.source.close()
