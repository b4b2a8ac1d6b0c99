"""``resources/subscribe`` for handshake-era callers: each URI is subscribed to at its
upstream once, whoever asked, and the upstream's ``notifications/resources/updated`` goes to
every caller session subscribed to it (as the URI that session knows)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from mcp.server.connection import Connection

logger = logging.getLogger(__name__)

UpstreamToggle = Callable[[str, bool], Awaitable[None]]
"""Subscribes (True) or unsubscribes (False) a gateway resource URI at its upstream."""


class ResourceWatch:
    """Who is subscribed to which resource, in this process."""

    def __init__(self, toggle: UpstreamToggle) -> None:
        self._toggle = toggle
        self._subscribers: dict[str, dict[Connection, str]] = {}

    async def subscribe(self, connection: Connection, gateway_uri: str, shown_uri: str) -> None:
        """Send ``connection`` the updates of ``gateway_uri`` (as ``shown_uri``) until it
        unsubscribes or closes."""
        subscribers = self._subscribers.setdefault(gateway_uri, {})
        first = not subscribers
        if connection not in subscribers:
            connection.exit_stack.push_async_callback(self.unsubscribe, connection, gateway_uri)
        subscribers[connection] = shown_uri
        if first:
            await self._toggle(gateway_uri, True)

    async def unsubscribe(self, connection: Connection, gateway_uri: str) -> None:
        """Stop sending ``connection`` the updates of ``gateway_uri``."""
        subscribers = self._subscribers.get(gateway_uri)
        if subscribers is None or subscribers.pop(connection, None) is None:
            return
        if not subscribers:
            del self._subscribers[gateway_uri]
            await self._toggle(gateway_uri, False)

    async def updated(self, gateway_uri: str) -> None:
        """Tell every subscriber of ``gateway_uri`` that it changed."""
        for connection, shown in list(self._subscribers.get(gateway_uri, {}).items()):
            await connection.send_resource_updated(shown)
