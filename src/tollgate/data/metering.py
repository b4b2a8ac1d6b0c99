"""What data needs from its host to charge reads: a meter (``create_app`` passes the accounts
part's credit path) and somewhere to send call events (the gateway's observers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from tollgate.core.events import ToolCallEvent

EventSink = Callable[[ToolCallEvent], None]
"""Receives one event per request; it must only queue work, never wait."""


class Meter(Protocol):
    """Charges reads like tool calls: reserved before the read, settled before the reply."""

    async def reserve(
        self, account_id: int, *, request_id: str, tool_name: str, upstream: str | None, cost: int
    ) -> object:
        """Reserve the read's credits; raise the credit path's error
        (``insufficient_credits``, ``account_inactive``, ...) when the account cannot pay."""
        ...

    async def settle(
        self,
        request_id: str,
        *,
        success: bool,
        is_backend_error: bool,
        error_code: str | None,
        latency_ms: float,
        cancelled: bool,
    ) -> bool:
        """Record the read and charge it (not a server-side failure or a cancelled read);
        True once durable, False when it was given up on (then nothing is charged)."""
        ...
