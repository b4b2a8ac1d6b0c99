"""Resumable event streams for handshake-era sessions (the protocol's SSE polling).

With an event store, the SDK's server starts each event stream with a priming event (an id
and a ``retry`` interval) and numbers what it sends, so a client whose stream broke (or
was closed by the server) reconnects with ``GET`` and ``Last-Event-ID`` and gets what it
missed. The SDK hands one store to every session and names streams by request id, which
sessions share; so each session gets a store of its own here, and one session can never
replay another's events. A session's events live as long as it does, within bounds.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict, deque
from typing import Any

from mcp.server.streamable_http import EventCallback, EventMessage, EventStore
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp_types import JSONRPCMessage

RETRY_INTERVAL_MS = 1000
"""How long a client waits before reconnecting to a stream the server closed."""

MAX_STREAMS_PER_SESSION = 100
"""Streams a session can resume (the most recent ones): requests still being answered."""

MAX_EVENTS_PER_STREAM = 500
"""Events kept per stream; a client further behind than this restarts its request."""


class SessionEvents(EventStore):
    """The recent events of one session's streams, for its client to resume."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._streams: OrderedDict[str, deque[tuple[str, JSONRPCMessage | None]]] = OrderedDict()
        self._stream_of: dict[str, str] = {}

    async def store_event(self, stream_id: str, message: JSONRPCMessage | None) -> str:
        """Keep an event of ``stream_id`` (None: a priming event); its new id."""
        event_id = str(next(self._ids))
        events = self._streams.get(stream_id)
        if events is None:
            events = self._streams[stream_id] = deque()
            if len(self._streams) > MAX_STREAMS_PER_SESSION:
                _, dropped = self._streams.popitem(last=False)
                self._forget(dropped)
        else:
            self._streams.move_to_end(stream_id)
        if len(events) >= MAX_EVENTS_PER_STREAM:
            self._forget([events.popleft()])
        events.append((event_id, message))
        self._stream_of[event_id] = stream_id
        return event_id

    async def replay_events_after(
        self, last_event_id: str, send_callback: EventCallback
    ) -> str | None:
        """Send what followed ``last_event_id`` on its stream; the stream's id, or None
        when that event is not (or no longer) known."""
        stream_id = self._stream_of.get(last_event_id)
        events = self._streams.get(stream_id) if stream_id is not None else None
        if stream_id is None or events is None:
            return None
        after = False
        for event_id, message in list(events):
            if after and message is not None:
                await send_callback(EventMessage(message, event_id))
            after = after or event_id == last_event_id
        return stream_id

    def _forget(self, events: Any) -> None:
        for event_id, _ in events:
            self._stream_of.pop(event_id, None)


def store_per_session(manager: StreamableHTTPSessionManager) -> None:
    """Give every session the manager opens an event store of its own."""
    # The manager shares one store between sessions; its admission step (private, with no
    # hook) is where a session's transport is made, before anything is sent on it.
    admit = manager._admit_session

    def admit_with_store(requestor: Any) -> Any:
        transport = admit(requestor)
        if transport is not None:
            transport._event_store = SessionEvents()
        return transport

    manager._admit_session = admit_with_store  # type: ignore[method-assign]
