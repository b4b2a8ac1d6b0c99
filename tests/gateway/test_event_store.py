"""The per-session event store that makes handshake-era streams resumable: a client resumes
its own stream from the event it last saw, never another session's, within bounds."""

from __future__ import annotations

import mcp_types as types
import pytest
from mcp.server.streamable_http import EventMessage

from tollgate.gateway import event_store
from tollgate.gateway.event_store import SessionEvents


def note(text: str) -> types.JSONRPCMessage:
    """A message standing for anything a server sends on a stream."""
    params = {"level": "info", "data": text}
    return types.JSONRPCNotification(jsonrpc="2.0", method="notifications/message", params=params)


async def replayed(store: SessionEvents, after: str) -> tuple[str | None, list[str]]:
    """The stream an event belongs to, and the texts of the events that followed it."""
    sent: list[EventMessage] = []

    async def keep(event: EventMessage) -> None:
        sent.append(event)

    stream = await store.replay_events_after(after, keep)
    return stream, [str(e.message.model_dump()["params"]["data"]) for e in sent]


async def test_a_stream_resumes_after_the_last_event_seen() -> None:
    store = SessionEvents()
    priming = await store.store_event("7", None)
    first = await store.store_event("7", note("one"))
    await store.store_event("8", note("other stream"))
    await store.store_event("7", note("two"))

    assert await replayed(store, priming) == ("7", ["one", "two"])
    assert await replayed(store, first) == ("7", ["two"])


async def test_sessions_never_replay_each_others_events() -> None:
    mine, theirs = SessionEvents(), SessionEvents()
    seen = await mine.store_event("1", note("mine"))
    await theirs.store_event("1", note("theirs"))  # the same request id in another session
    await mine.store_event("1", note("mine again"))

    assert await replayed(mine, seen) == ("1", ["mine again"])
    assert await replayed(theirs, seen) == ("1", [])
    assert await replayed(theirs, "no such event") == (None, [])


async def test_old_events_and_streams_are_let_go(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(event_store, "MAX_EVENTS_PER_STREAM", 2)
    monkeypatch.setattr(event_store, "MAX_STREAMS_PER_SESSION", 2)
    store = SessionEvents()
    oldest = await store.store_event("a", note("1"))
    await store.store_event("a", note("2"))
    kept = await store.store_event("a", note("3"))
    await store.store_event("a", note("4"))

    assert await replayed(store, oldest) == (None, [])
    assert await replayed(store, kept) == ("a", ["4"])

    await store.store_event("b", note("b"))
    await store.store_event("c", note("c"))  # a third stream: the least recent one goes
    assert await replayed(store, kept) == (None, [])
