"""Resource subscriptions of callers in both protocol eras.

A handshake-era session subscribes with ``resources/subscribe`` and is sent
``notifications/resources/updated``; a 2026-07-28 caller names the resources on its
``subscriptions/listen`` stream and gets the updates on that stream. Whoever asked, a
resource is subscribed to at its upstream once, while anyone wants it (counted over both
eras' subscribers), and an update the upstream reports reaches every subscriber once, as
the URI that subscriber knows.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import anyio
import anyio.lowlevel
from mcp.server.connection import Connection
from mcp.server.subscriptions import ResourceUpdated, ServerEvent

from tollgate.gateway import naming

logger = logging.getLogger(__name__)

LEAVE_SECONDS = 10.0
"""How long a closed listen stream's upstream unsubscriptions may take (they run shielded
from the stream's own cancellation, so they are bounded instead)."""

UpstreamChanged = Callable[[str], Awaitable[None]]
"""Told an upstream's name when what is wanted of it changed (:meth:`ResourceWatch.wanted`)."""

Listener = Callable[[ServerEvent], None]


class Delivery(Protocol):
    """Sends one subscriber an update (hashable: subscribers sharing one are sent it once)."""

    def __hash__(self) -> int: ...

    async def __call__(self) -> None: ...


@dataclass(frozen=True)
class SessionUpdate:
    """``notifications/resources/updated`` on a handshake-era session, as ``uri``."""

    connection: Connection
    uri: str

    async def __call__(self) -> None:
        await self.connection.send_resource_updated(self.uri)


class PathBus:
    """The endpoint's subscription bus: list changes go to every ``subscriptions/listen``
    stream, a resource update only to the streams of the path that shows it under that URI
    (``/mcp`` and each virtual server name resources their own way, and an unprefixed
    server's original URIs may repeat across servers).

    A stream belongs to the path ``path_of()`` names when it subscribes (the SDK's listen
    handler subscribes in the request's own context)."""

    def __init__(self, path_of: Callable[[], str | None]) -> None:
        self._path_of = path_of
        self._listeners: dict[object, tuple[str | None, Listener]] = {}

    async def publish(self, event: ServerEvent) -> None:
        """Deliver ``event`` to every stream (a list change)."""
        await self._deliver(event, lambda _: True)

    async def publish_at(self, path: str | None, event: ServerEvent) -> None:
        """Deliver ``event`` to the streams of ``path`` only (None: ``/mcp``)."""
        await self._deliver(event, lambda own: own == path)

    async def _deliver(self, event: ServerEvent, wanted: Callable[[str | None], bool]) -> None:
        for path, listener in list(self._listeners.values()):
            if not wanted(path):
                continue
            try:
                listener(event)
            except Exception:  # one broken stream must not starve the others
                logger.exception("a listen stream failed to take an event")
        await anyio.lowlevel.checkpoint()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Register a stream's listener; returns what unregisters it (idempotent)."""
        token = object()
        self._listeners[token] = (self._path_of(), listener)

        def unsubscribe() -> None:
            self._listeners.pop(token, None)

        return unsubscribe


@dataclass(frozen=True)
class StreamUpdate:
    """A ``ResourceUpdated`` event, as ``uri``, for the listen streams of one path."""

    bus: PathBus
    path: str | None
    uri: str

    async def __call__(self) -> None:
        await self.bus.publish_at(self.path, ResourceUpdated(uri=self.uri))


class ResourceWatch:
    """Who is subscribed to which resource, in this process."""

    def __init__(self, changed: UpstreamChanged) -> None:
        self._changed = changed
        self._subscribers: dict[str, dict[Hashable, Delivery]] = {}
        """Per gateway URI: each subscriber (a session, a listen stream) and its delivery."""

    def wanted(self, upstream: str) -> frozenset[str]:
        """The upstream's resources (its own URIs) someone is subscribed to now."""
        found = (naming.split_resource_uri(uri) for uri in self._subscribers)
        return frozenset(parts[1] for parts in found if parts and parts[0] == upstream)

    async def subscribe(self, subscriber: Hashable, wanted: dict[str, Delivery]) -> None:
        """Send ``subscriber`` the updates of each gateway URI of ``wanted`` its own way."""
        first = []
        for gateway_uri, delivery in wanted.items():
            subscribers = self._subscribers.setdefault(gateway_uri, {})
            if not subscribers:
                first.append(gateway_uri)
            subscribers[subscriber] = delivery
        await self._upstreams_changed(first)

    async def unsubscribe(self, subscriber: Hashable, gateway_uris: Iterable[str]) -> None:
        """Stop sending ``subscriber`` the updates of ``gateway_uris``."""
        last = []
        for gateway_uri in gateway_uris:
            subscribers = self._subscribers.get(gateway_uri)
            if subscribers is None or subscribers.pop(subscriber, None) is None:
                continue
            if not subscribers:
                del self._subscribers[gateway_uri]
                last.append(gateway_uri)
        await self._upstreams_changed(last)

    async def _upstreams_changed(self, gateway_uris: list[str]) -> None:
        found = (naming.split_resource_uri(uri) for uri in gateway_uris)
        for upstream in sorted({parts[0] for parts in found if parts}):
            await self._changed(upstream)

    async def subscribe_session(
        self, connection: Connection, gateway_uri: str, shown_uri: str
    ) -> None:
        """Send a handshake-era session the updates of ``gateway_uri`` (as ``shown_uri``)
        until it unsubscribes or closes."""
        if connection not in self._subscribers.get(gateway_uri, {}):
            connection.exit_stack.push_async_callback(self.unsubscribe, connection, [gateway_uri])
        await self.subscribe(connection, {gateway_uri: SessionUpdate(connection, shown_uri)})

    @asynccontextmanager
    async def listening(self, wanted: dict[str, Delivery]) -> AsyncIterator[None]:
        """Subscribe one listen stream to ``wanted`` (gateway URI: delivery) for the block:
        its upstreams are subscribed before the block runs, and let go when it ends."""
        stream = object()
        try:
            await self.subscribe(stream, wanted)
            yield
        finally:
            with anyio.move_on_after(LEAVE_SECONDS, shield=True):
                await self.unsubscribe(stream, wanted)

    async def updated(self, gateway_uri: str) -> None:
        """Tell every subscriber of ``gateway_uri`` that it changed."""
        deliveries = dict.fromkeys(self._subscribers.get(gateway_uri, {}).values())
        for delivery in deliveries:
            try:
                await delivery()
            except Exception as exc:  # a session gone meanwhile must not stop the others
                logger.info("a resource update was not delivered: %s", type(exc).__name__)
