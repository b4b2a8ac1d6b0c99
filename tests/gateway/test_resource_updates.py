"""Resource updates reach the callers subscribed to them, whichever era the caller and the
upstream speak: a handshake-era caller subscribes with ``resources/subscribe`` and is sent
``notifications/resources/updated``, a 2026-07-28 caller names the resource on its
``subscriptions/listen`` stream. Each is told as the URI it knows (the gateway URI on
``/mcp``, the original on an unprefixed virtual server); the upstream is subscribed once
however many callers want the resource, and let go when the last one leaves."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.subscriptions import ResourceUpdated, ToolsListChanged

from tests.gateway.conftest import (
    ERAS,
    Member,
    WatchedGateway,
    connect,
    mcp_client_at,
    quick_member,
    register_upstream,
    text_of,
)
from tests.gateway.test_forward_path import Wrapper
from tests.gateway.test_virtual_servers import at, defined
from tests.gateway.upstream import ALLOW_LOCAL, Subscribers, make_server, serve_in_thread
from tests.waiting import eventually
from tollgate.identity.models import Role

HELLO = "res://hello"
"""The upstream's resource, as the upstream (and an unprefixed virtual server) names it."""

GATEWAY_HELLO = "tollgate://echo/res%3A%2F%2Fhello"
"""The same resource as ``/mcp`` names it."""

UPDATE_SECONDS = 15.0
"""An update reaches the caller well within this, on a loaded machine too."""

UPSTREAM_ERAS = ["2026-07-28", "handshake"]


@dataclass
class Subscribable:
    """A test upstream that keeps who is subscribed to its resources."""

    url: str
    subscribers: Subscribers

    async def let_go(self) -> None:
        """Wait until nobody is subscribed to anything at the upstream."""

        async def nobody() -> bool:
            return not self.subscribers.wanted()

        await eventually(nobody, lambda: f"the upstream let go of {self.subscribers.wanted()}")


@pytest.fixture(params=UPSTREAM_ERAS)
def subscribable(request: pytest.FixtureRequest) -> Iterator[Subscribable]:
    """The test upstream, speaking both eras or (wrapped) the handshake era only."""
    subscribers = Subscribers()
    app: Any = make_server("echo", subscribers=subscribers).streamable_http_app(
        transport_security=ALLOW_LOCAL
    )
    if request.param == "handshake":
        app = Wrapper(app, handshake_only=True)
    url, stop = serve_in_thread(app)
    try:
        yield Subscribable(url, subscribers)
    finally:
        stop()


@dataclass
class Updates:
    """The resource updates one caller received, by URI, in order."""

    uris: list[str] = field(default_factory=list)
    _arrived: anyio.Event = field(default_factory=anyio.Event)

    def note(self, uri: str) -> None:
        self.uris.append(uri)
        self._arrived.set()
        self._arrived = anyio.Event()

    async def on_message(self, message: Any) -> None:
        """A handshake-era client's message handler."""
        if isinstance(message, types.ResourceUpdatedNotification):
            self.note(str(message.params.uri))

    def handler(self, mode: str) -> dict[str, Any]:
        """The client options that feed these updates: the message handler in the handshake
        era (a 2026-07-28 client's are read off its listen stream instead)."""
        return {"message_handler": self.on_message} if mode == "legacy" else {}

    async def wait_for(self, uri: str) -> None:
        """Wait (bounded) until ``uri`` was updated."""
        with anyio.fail_after(UPDATE_SECONDS):
            while uri not in self.uris:
                await self._arrived.wait()


def _subscription(uri: str, subscribe: bool) -> types.SubscribeRequest | types.UnsubscribeRequest:
    if subscribe:
        return types.SubscribeRequest(params=types.SubscribeRequestParams(uri=uri))
    return types.UnsubscribeRequest(params=types.UnsubscribeRequestParams(uri=uri))


@asynccontextmanager
async def watching(
    client: Client, mode: str, uris: list[str], updates: Updates
) -> AsyncIterator[None]:
    """Subscribe ``client`` to ``uris`` for the block, in its era's way: ``resources/
    subscribe`` then ``resources/unsubscribe`` (updates reach its message handler), or a
    listen stream naming them, read into ``updates`` and closed at the end."""
    if mode == "legacy":
        for uri in uris:
            await client.session.send_request(_subscription(uri, True), types.EmptyResult)
        yield
        for uri in uris:
            await client.session.send_request(_subscription(uri, False), types.EmptyResult)
        return
    async with (
        client.listen(resource_subscriptions=uris) as events,
        anyio.create_task_group() as group,
    ):

        async def read() -> None:
            async for event in events:
                if isinstance(event, ResourceUpdated):
                    updates.note(event.uri)

        group.start_soon(read)
        yield
        group.cancel_scope.cancel()


async def _echo_upstream(gateway: WatchedGateway, subscribable: Subscribable) -> Member:
    """Register the upstream as ``echo``; returns the admin who did."""
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=subscribable.url)
    return admin


async def _unprefixed(gateway: WatchedGateway, admin: Member) -> str:
    """The URL of a virtual server serving all of ``echo`` under its own names."""
    everything = ["echo__*"]
    await defined(
        gateway, admin, name="plain", tools=everything, resources=everything, prefixed=False
    )
    return at(gateway, "plain")


@pytest.mark.parametrize("path", ["/mcp", "unprefixed server"])
@pytest.mark.parametrize("mode", ERAS)
async def test_a_subscriber_is_told_of_an_update_as_its_uri_and_the_upstream_let_go_after(
    subscribable: Subscribable, watched_gateway: WatchedGateway, mode: str, path: str
) -> None:
    gateway = watched_gateway
    admin = await _echo_upstream(gateway, subscribable)
    url, known = gateway.mcp_url, GATEWAY_HELLO
    if path != "/mcp":
        url, known = await _unprefixed(gateway, admin), HELLO
    touch = "echo__touch" if path == "/mcp" else "touch"
    user = await quick_member(gateway, credits=10)
    updates = Updates()

    async with mcp_client_at(url, user.key, mode, **updates.handler(mode)) as client:
        if mode == "legacy":
            await gateway.wait_event_streams()  # where the notification comes
        async with watching(client, mode, [known], updates):
            subscribed = subscribable.subscribers.count(HELLO)
            touched = await client.call_tool(touch, {"uri": HELLO})
            await updates.wait_for(known)
        await subscribable.let_go()

    assert subscribed == 1
    assert text_of(touched) == f"touched {HELLO}"
    assert updates.uris == [known]


async def test_callers_of_both_eras_share_one_upstream_subscription_until_the_last_leaves(
    subscribable: Subscribable, watched_gateway: WatchedGateway
) -> None:
    gateway = watched_gateway
    await _echo_upstream(gateway, subscribable)
    user = await quick_member(gateway, credits=10)
    old, new = Updates(), Updates()
    counted: list[int] = []

    async with (
        connect(gateway, user.key, "legacy", message_handler=old.on_message) as legacy,
        connect(gateway, user.key, "2026-07-28") as modern,
    ):
        await gateway.wait_event_streams()
        async with watching(modern, "2026-07-28", [GATEWAY_HELLO], new):
            async with watching(legacy, "legacy", [GATEWAY_HELLO], old):
                counted.append(subscribable.subscribers.count(HELLO))
                await modern.call_tool("echo__touch", {"uri": HELLO})
                await old.wait_for(GATEWAY_HELLO)
                await new.wait_for(GATEWAY_HELLO)
            counted.append(subscribable.subscribers.count(HELLO))
            await legacy.call_tool("echo__touch", {"uri": HELLO})
            await eventually(_count_of(new, 2), "the listening caller is told again")
        await subscribable.let_go()

    assert counted == [1, 1]
    assert old.uris == [GATEWAY_HELLO]
    assert new.uris == [GATEWAY_HELLO, GATEWAY_HELLO]


def _count_of(updates: Updates, wanted: int) -> Callable[[], Awaitable[bool]]:
    async def enough() -> bool:
        return len(updates.uris) >= wanted

    return enough


async def test_a_handshake_session_that_ends_lets_its_subscriptions_go(
    subscribable: Subscribable, watched_gateway: WatchedGateway
) -> None:
    await _echo_upstream(watched_gateway, subscribable)
    user = await quick_member(watched_gateway)

    async with connect(watched_gateway, user.key) as client:
        await client.session.send_request(_subscription(GATEWAY_HELLO, True), types.EmptyResult)
        subscribed = subscribable.subscribers.wanted()
    await subscribable.let_go()

    assert subscribed == {HELLO}


@pytest.mark.parametrize("subscribable", ["2026-07-28"], indirect=True)
async def test_a_listen_stream_hears_only_the_updates_of_its_own_path(
    subscribable: Subscribable, watched_gateway: WatchedGateway
) -> None:
    gateway = watched_gateway
    admin = await _echo_upstream(gateway, subscribable)
    plain_url = await _unprefixed(gateway, admin)
    user = await quick_member(gateway, credits=10)
    on_server = Updates()
    heard: list[Any] = []

    async with (
        mcp_client_at(plain_url, user.key, "2026-07-28") as plain,
        connect(gateway, user.key, "2026-07-28") as client,
        watching(plain, "2026-07-28", [HELLO], on_server),
        # /mcp serves no "res://hello": its stream must not hear the server's update.
        client.listen(
            tools_list_changed=True, resource_subscriptions=[HELLO, GATEWAY_HELLO]
        ) as events,
    ):
        await client.call_tool("echo__touch", {"uri": HELLO})
        await on_server.wait_for(HELLO)
        await client.call_tool("echo__mutate", {"tool_name": "later"})
        with anyio.fail_after(UPDATE_SECONDS):
            async for event in events:
                heard.append(event)
                if isinstance(event, ToolsListChanged):
                    break

    assert on_server.uris == [HELLO]
    assert heard == [ResourceUpdated(uri=GATEWAY_HELLO), ToolsListChanged()]
