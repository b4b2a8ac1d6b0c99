"""The live feed (``WebSocket /api/v1/analytics/live``): admins get every new event and a
per-second aggregate, from every process sharing the cache; everyone else is refused."""

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

from tests.analytics.conftest import EVENT_TEMPLATE, person
from tests.conftest import require_redis
from tests.gateway.conftest import Gateway, Upstream, add_upstream, mcp_client, quick_member
from tests.live import server_env, serving
from tollgate.analytics.live import POLICY_VIOLATION
from tollgate.core.runtime import Runtime
from tollgate.identity.models import Role

LIVE_DEADLINE_SECONDS = 10.0
"""A published event (and the next aggregates) reach a subscriber well within this."""

Message = dict[str, Any]


def live_url(base_url: str, token: str) -> str:
    """The live feed's address on the server at ``base_url``, with ``token`` in the query."""
    return base_url.replace("http://", "ws://", 1) + f"/api/v1/analytics/live?token={token}"


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
    assert aggregate["window_seconds"] == 1.0


async def test_live_socket_streams_gateway_calls_and_per_second_aggregates(
    upstream: Upstream, gateway: Gateway
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    await add_upstream(gateway, admin, name="echo", url=upstream.url, price=1)
    user = await quick_member(gateway, credits=10)

    async with connect(live_url(gateway.url, admin.jwt), open_timeout=10) as socket:
        await subscribed(socket)
        async with mcp_client(gateway, user.key, "2026-07-28") as client:
            await client.call_tool("echo__echo", {"text": "live"})
        event, aggregate = await collect(socket, event_of("echo__echo"), aggregate_with_events)

    assert (event["service"], event["success"], event["credits"]) == ("echo", True, 1)
    assert event["response_time_ms"] > 0
    assert event["metadata"]["protocol_version"] == "2026-07-28"
    assert aggregate["errors"] == 0


async def refusal(url: str) -> tuple[Message, int | None]:
    """The message and close code a refused live socket gets."""
    async with connect(url, open_timeout=10) as socket:
        message = json.loads(await asyncio.wait_for(socket.recv(), LIVE_DEADLINE_SECONDS))
        try:
            extra = await asyncio.wait_for(socket.recv(), LIVE_DEADLINE_SECONDS)
        except ConnectionClosed as closed:
            return message, closed.rcvd.code if closed.rcvd else None
    raise AssertionError(f"expected the feed to close, got {extra!r}")


async def test_live_socket_refuses_anyone_but_admins(gateway: Gateway) -> None:
    user = await quick_member(gateway)
    base = gateway.url.replace("http://", "ws://", 1) + "/api/v1/analytics/live"
    for name, url in [
        ("plain user", live_url(gateway.url, user.jwt)),
        ("account key", live_url(gateway.url, user.key)),
        ("forged token", live_url(gateway.url, user.jwt[:-4] + "AAAA")),
        ("no token", base),
    ]:
        message, code = await refusal(url)

        assert message == {"type": "error", "error": "Not authorized"}, name
        assert code == POLICY_VIOLATION, name
