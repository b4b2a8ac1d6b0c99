"""The live feed (``WebSocket /api/v1/analytics/live``): admins get every new event and a
per-second aggregate (calls, errors, latency, credits), from every process sharing the cache;
a browser opens it with a ticket (a token good for the feed only) sent as a subprotocol;
everyone else is refused."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from tests.analytics.conftest import EVENT_TEMPLATE, person
from tests.conftest import require_redis
from tests.gateway.conftest import (
    Gateway,
    Member,
    Upstream,
    add_upstream,
    mcp_client,
    quick_member,
)
from tests.live import server_env, serving
from tollgate.analytics.live import LIVE_PROTOCOL, POLICY_VIOLATION, live_ticket
from tollgate.core.runtime import Runtime
from tollgate.identity.models import Role, User

LIVE_DEADLINE_SECONDS = 10.0
"""A published event (and the next aggregates) reach a subscriber well within this."""

Message = dict[str, Any]


def feed_url(base_url: str) -> str:
    """The live feed's address on the server at ``base_url``."""
    return base_url.replace("http://", "ws://", 1) + "/api/v1/analytics/live"


def live_url(base_url: str, token: str) -> str:
    """The live feed's address on the server at ``base_url``, with ``token`` in the query."""
    return f"{feed_url(base_url)}?token={token}"


async def subscribed(socket: ClientConnection) -> None:
    """Wait for the feed's confirmation that the subscription is live."""
    first = json.loads(await asyncio.wait_for(socket.recv(), LIVE_DEADLINE_SECONDS))
    assert first == {"type": "subscribed", "channel": "live"}, first


async def collect(socket: ClientConnection, *wanted: Callable[[Message], bool]) -> list[Message]:
    """Read the feed until each predicate has matched a message; the matches, in order of
    the predicates (bounded wait)."""
    found: list[Message | None] = [None] * len(wanted)
    async with asyncio.timeout(LIVE_DEADLINE_SECONDS):
        while any(f is None for f in found):
            message = json.loads(await socket.recv())
            for index, predicate in enumerate(wanted):
                if found[index] is None and predicate(message):
                    found[index] = message
    return [f for f in found if f is not None]


def event_of(tool: str) -> Callable[[Message], bool]:
    return lambda m: m.get("type") == "event" and m.get("tool_name") == tool


def aggregate_with_events(m: Message) -> bool:
    return m.get("type") == "aggregate" and m.get("events", 0) >= 1


async def test_event_ingested_through_one_process_reaches_a_live_socket_on_the_other(
    runtime: Runtime, tmp_path: Path
) -> None:
    require_redis()
    admin = await person(runtime, Role.ADMIN)
    marker = f"cross-process-{uuid.uuid4().hex[:8]}"
    env = server_env(runtime.settings)
    async with (
        serving(env, tmp_path / "a.log") as server_a,
        serving(env, tmp_path / "b.log") as server_b,
        connect(live_url(server_b, admin.jwt), open_timeout=10) as socket,
    ):
        await subscribed(socket)
        async with httpx.AsyncClient(base_url=server_a, timeout=30) as http:
            response = await http.post(
                "/api/v1/analytics/batch",
                json={
                    "events": [{**EVENT_TEMPLATE, "tool_name": marker, "success": False}],
                    "errors": [{"error_type": "Boom", "error_message": marker}],
                },
                headers=admin.headers,
            )
        assert response.status_code == 201, response.text

        event, error, aggregate = await collect(
            socket,
            event_of(marker),
            lambda m: m.get("type") == "error" and m.get("error_message") == marker,
            aggregate_with_events,
        )

    assert (event["service"], event["success"], event["response_time_ms"]) == (
        EVENT_TEMPLATE["service"],
        False,
        EVENT_TEMPLATE["response_time_ms"],
    )
    assert error["error_type"] == "Boom"
    assert aggregate["events"] == 1
    assert aggregate["errors"] in (1, 2)  # the failed event, and the error if in that second
    assert aggregate["avg_latency_ms"] == EVENT_TEMPLATE["response_time_ms"]
    assert aggregate["p50_latency_ms"] == EVENT_TEMPLATE["response_time_ms"]
    assert aggregate["window_seconds"] == 1.0


async def echo_with_caller(
    gateway: Gateway, upstream: Upstream, *, price: int
) -> tuple[Member, Member]:
    """An admin who registered the echo upstream at ``price`` a call, and a user with credits
    to call it."""
    admin = await quick_member(gateway, role=Role.ADMIN)
    await add_upstream(gateway, admin, name="echo", url=upstream.url, price=price)
    return admin, await quick_member(gateway, credits=10)


async def one_echo_seen(
    socket: ClientConnection, gateway: Gateway, key: str
) -> tuple[Message, Message]:
    """Once the feed is subscribed, call ``echo__echo`` with ``key``; its event on the feed and
    the first aggregate counting an event."""
    await subscribed(socket)
    async with mcp_client(gateway, key, "2026-07-28") as client:
        await client.call_tool("echo__echo", {"text": "live"})
    event, aggregate = await collect(socket, event_of("echo__echo"), aggregate_with_events)
    return event, aggregate


async def test_live_socket_streams_gateway_calls_and_per_second_aggregates(
    upstream: Upstream, gateway: Gateway
) -> None:
    admin, user = await echo_with_caller(gateway, upstream, price=1)

    async with connect(live_url(gateway.url, admin.jwt), open_timeout=10) as socket:
        event, aggregate = await one_echo_seen(socket, gateway, user.key)

    assert (event["service"], event["success"], event["credits"]) == ("echo", True, 1)
    assert event["response_time_ms"] > 0
    assert event["metadata"]["protocol_version"] == "2026-07-28"
    assert aggregate["errors"] == 0
    assert aggregate["credits"] == 1
    assert aggregate["p50_latency_ms"] == aggregate["avg_latency_ms"] == event["response_time_ms"]


async def ticket_of(gateway: Gateway, user_id: int) -> str:
    """The live feed's ticket for the user ``user_id``, as the dashboard page gets it."""
    async with gateway.runtime.sessions() as session:
        user = await session.get(User, user_id)
        assert user is not None
        return live_ticket(gateway.runtime.settings, user)


def ticket_protocols(ticket: str) -> list[Subprotocol]:
    """The subprotocols a browser offers to open the feed with ``ticket``."""
    return [Subprotocol(LIVE_PROTOCOL), Subprotocol(f"bearer.{ticket}")]


async def test_a_ticket_sent_as_a_subprotocol_opens_the_feed_and_no_other_route(
    upstream: Upstream, gateway: Gateway
) -> None:
    admin, user = await echo_with_caller(gateway, upstream, price=2)
    ticket = await ticket_of(gateway, admin.user_id)

    protocols = ticket_protocols(ticket)
    async with connect(feed_url(gateway.url), subprotocols=protocols, open_timeout=10) as socket:
        event, aggregate = await one_echo_seen(socket, gateway, user.key)
        chosen = socket.subprotocol
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        api = await http.get(
            "/api/v1/analytics/dashboard", headers={"Authorization": f"Bearer {ticket}"}
        )
        mcp = await http.post("/mcp", json={}, headers={"Authorization": f"Bearer {ticket}"})

    assert chosen == LIVE_PROTOCOL  # never the bearer one: the token is not echoed
    assert (event["credits"], aggregate["credits"]) == (2, 2)
    assert api.status_code == 401, api.text
    assert mcp.status_code == 401, mcp.text


async def refusal(
    url: str, protocols: list[Subprotocol] | None = None
) -> tuple[Message, int | None]:
    """The message and close code a refused live socket gets."""
    async with connect(url, subprotocols=protocols, open_timeout=10) as socket:
        message = json.loads(await asyncio.wait_for(socket.recv(), LIVE_DEADLINE_SECONDS))
        try:
            extra = await asyncio.wait_for(socket.recv(), LIVE_DEADLINE_SECONDS)
        except ConnectionClosed as closed:
            return message, closed.rcvd.code if closed.rcvd else None
    raise AssertionError(f"expected the feed to close, got {extra!r}")


async def test_live_socket_refuses_anyone_but_admins(gateway: Gateway) -> None:
    user = await quick_member(gateway)
    ticket = await ticket_of(gateway, user.user_id)
    base = feed_url(gateway.url)
    for name, url, protocols in [
        ("plain user", live_url(gateway.url, user.jwt), None),
        ("account key", live_url(gateway.url, user.key), None),
        ("forged token", live_url(gateway.url, user.jwt[:-4] + "AAAA"), None),
        ("no token", base, None),
        ("plain user's ticket", base, ticket_protocols(ticket)),
        ("forged ticket", base, ticket_protocols(ticket[:-4] + "AAAA")),
    ]:
        message, code = await refusal(url, protocols)

        assert message == {"type": "error", "error": "Not authorized"}, name
        assert code == POLICY_VIOLATION, name
