"""Agents' data access in one process: the source, who may connect, what is charged and
what gets recorded.

A read made with an account key costs what the equivalent data tool call costs
(``TOLLGATE_DATA_TOOL_PRICE``), through the same credit path (the :class:`Meter` the app
passes in): the charge and a pending call record in one short transaction (refused, and
nothing read, when the balance cannot pay), then the outcome settled before the reply is
sent; a read that fails on the server's side, or is cancelled before its reply, is refunded.
Reads with the shared ``MCP_TOKEN`` (the operator's, no account) are free.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import anyio

from tollgate.core.crypto import constant_time_equal
from tollgate.core.errors import Forbidden, InsufficientCredits, NotFound, Unauthorized
from tollgate.core.events import ToolCallEvent
from tollgate.core.naming import exposed
from tollgate.core.settings import Settings
from tollgate.data.metering import EventSink, Meter
from tollgate.data.protocol import (
    READ_ACTIONS,
    WRITE_ACTIONS,
    Answer,
    Handler,
    ReadRequest,
    error,
)
from tollgate.data.source import DataSource
from tollgate.data.tools import TOOL_ACTIONS, UPSTREAM_NAME
from tollgate.identity.credentials import ACCOUNT_KEY_ONLY, AccountKeyCaller, Credentials

logger = logging.getLogger(__name__)

WS_UPSTREAM = "data-ws"
"""How WebSocket requests are named in usage events and call records (tools calls are
``data``)."""

ACTION_TOOLS = {action: exposed(UPSTREAM_NAME, tool) for tool, action in TOOL_ACTIONS.items()}
"""Each read action is charged and recorded as the data tool that answers it."""

QUERY_FAILED = "query_failed"
"""Error code of a read that failed on the server's side (refunded)."""

CANCELLED = "cancelled"
"""Error code of a read cancelled before its reply (refunded), as the tool path records it."""

OPERATOR = 0
"""The account id of the shared ``MCP_TOKEN``: no account, nothing to charge."""


@dataclass(frozen=True)
class Agent:
    """Who opened a data connection: the shared MCP_TOKEN, or an account's key."""

    account_id: int
    user_id: int
    connection_id: str

    @property
    def metered(self) -> bool:
        """Whether this agent's reads are charged (an account key, not ``MCP_TOKEN``)."""
        return self.account_id != OPERATOR


class DataAccess:
    """The data source with its protocol handler, authentication, metering and recording."""

    def __init__(
        self, settings: Settings, credentials: Credentials, meter: Meter, emit: EventSink
    ) -> None:
        self.settings = settings
        self.credentials = credentials
        self.meter = meter
        self.emit = emit
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
            return Agent(OPERATOR, 0, connection_id)
        try:
            caller = await self.credentials.authenticate_bearer(token, accept=ACCOUNT_KEY_ONLY)
        except Unauthorized:
            return None
        if not isinstance(caller, AccountKeyCaller):
            return None
        return Agent(caller.account_id, caller.user_id, connection_id)

    async def answer(self, agent: Agent, text: str | bytes) -> dict[str, Any]:
        """The reply to one frame from ``agent``, charged and recorded."""
        started = time.perf_counter()
        message, checked = self.handler.check_text(text)
        credits = 0
        if not isinstance(checked, ReadRequest):
            reply = checked
        elif agent.metered:
            reply, credits = await self._metered_read(agent, checked)
        else:
            reply = (await self.handler.read(checked)).body
        self.record(agent, message, reply, started, credits)
        return reply

    async def _metered_read(self, agent: Agent, request: ReadRequest) -> tuple[dict[str, Any], int]:
        """Reserve the read's price, run it, settle it: the reply and the credits it cost."""
        call_id = uuid.uuid4().hex
        price = self.settings.data_tool_price
        refusal = await self._reserve(agent, request, call_id, price)
        if refusal is not None:
            return refusal, 0
        started = time.perf_counter()
        try:
            answer = await self.handler.read(request)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):  # never answered: refunded
                await self._settle(call_id, started, None)
            raise
        with anyio.CancelScope(shield=True):  # the outcome is durable before the reply
            refunded = await self._settle(call_id, started, answer)
        return answer.body, 0 if refunded else price

    async def _reserve(
        self, agent: Agent, request: ReadRequest, call_id: str, price: int
    ) -> dict[str, Any] | None:
        """Charge the read and record it pending; the error reply when the account cannot
        pay (the tool path's text and code)."""
        try:
            await self.meter.reserve(
                agent.account_id,
                request_id=call_id,
                tool_name=ACTION_TOOLS[request.action],
                upstream=WS_UPSTREAM,
                cost=price,
            )
        except (InsufficientCredits, Forbidden, NotFound) as refused:
            return {**error(refused.message, request.id), "code": refused.code}
        return None

    async def _settle(self, call_id: str, started: float, answer: Answer | None) -> bool:
        """Commit the read's outcome (``answer`` None: cancelled before its reply); True when
        it was refunded (a server-side failure, or cancelled)."""
        durable = await self.meter.settle(
            call_id,
            success=answer is not None and answer.ok,
            is_backend_error=answer is not None and answer.failed,
            error_code=_error_code(answer),
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            cancelled=answer is None,
        )
        if not durable:
            logger.error("read %s answered with its outcome not recorded", call_id)
        return answer is None or answer.failed

    def record(
        self,
        agent: Agent,
        request: object,
        reply: dict[str, object],
        started: float,
        credits: int = 0,
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
        self.emit(
            ToolCallEvent(
                request_id=str(reply.get("id") or uuid.uuid4().hex),
                account_id=agent.account_id,
                user_id=agent.user_id,
                upstream=WS_UPSTREAM,
                tool=f"{action}:{model}",
                credits=credits,
                success=reply.get("status") == "ok",
                is_backend_error=False,
                error_code=None
                if reply.get("status") == "ok"
                else str(reply.get("code") or "request_refused"),
                latency_ms=(time.perf_counter() - started) * 1000,
                protocol_version="ws",
                session_id=agent.connection_id,
            )
        )

    async def close(self) -> None:
        """Release the data source's connections."""
        await self.source.close()


def _error_code(answer: Answer | None) -> str | None:
    """A read's error code as the tool path records it: None (data), ``tool_error`` (the
    source refused it: charged), a server-side failure (refunded), or cancelled."""
    if answer is None:
        return CANCELLED
    if answer.ok:
        return None
    return QUERY_FAILED if answer.failed else "tool_error"
