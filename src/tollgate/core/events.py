"""What a finished call tells observers (analytics): the one hook the gateway and data offer."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToolCallEvent:
    """One finished call: a ``tools/call`` through the gateway, or a data read."""

    request_id: str
    account_id: int
    user_id: int
    upstream: str
    tool: str
    credits: int
    success: bool
    is_backend_error: bool
    error_code: str | None
    latency_ms: float
    protocol_version: str | None
    session_id: str | None


Observer = Callable[[ToolCallEvent], None]
"""Called synchronously after each call: it must only queue work, never wait."""


class Observers:
    """The observers attached to a gateway."""

    def __init__(self) -> None:
        self._observers: list[Observer] = []

    def attach(self, observer: Observer) -> None:
        """Receive every future call event."""
        self._observers.append(observer)

    def emit(self, event: ToolCallEvent) -> None:
        """Hand ``event`` to each observer; one failing never affects the call or the others."""
        for observer in self._observers:
            try:
                observer(event)
            except Exception:
                logger.exception("call observer failed")
