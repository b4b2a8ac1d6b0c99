"""The forward path (tool calls relayed as raw JSON-RPC): the upstream sees the caller's own
request, a handshake-era upstream's session is opened again when it forgets it, and a
stream it closes mid-call is resumed; the SDK's path still serves calls when the forward
path is turned off."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from mcp.server.mcpserver import Context, MCPServer
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tests.gateway.conftest import (
    ERAS,
    Gateway,
    StoppableUpstream,
    Upstream,
    connect,
    http_to,
    quick_member,
    register_upstream,
    serving,
    text_of,
    wait_settled,
)
from tests.gateway.upstream import ALLOW_LOCAL, make_server, serve_in_thread
from tests.waiting import eventually
from tollgate.core.settings import Settings
from tollgate.gateway import forward
from tollgate.gateway.event_store import store_per_session
from tollgate.identity.models import Role


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class Wrapper:
    """An upstream app with test hooks around it: the tool calls it was sent, a handshake
    era only, a session it forgets once."""

    def __init__(self, app: ASGIApp, *, handshake_only: bool = False) -> None:
        self.app = app
        self.handshake_only = handshake_only
        self.tool_calls: list[dict[str, Any]] = []
        self.forget_session = False
        self.initialized = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        version = _header(scope, b"mcp-protocol-version")
        if self.handshake_only and version in MODERN_PROTOCOL_VERSIONS:
            await Response("this server speaks the handshake era only", 400)(scope, receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        decoded = json.loads(body)
        if decoded.get("method") == "initialize":
            self.initialized += 1
        if self.forget_session and _header(scope, b"mcp-session-id"):
            self.forget_session = False
            gone = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "gone"}}
            await JSONResponse(gone, 404)(scope, receive, send)
            return
        if decoded.get("method") == "tools/call":
            self.tool_calls.append(decoded)
        await self.app(scope, _replay(body), send)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    return receive


def _resumable_server() -> MCPServer:
    server = make_server("echo")

    @server.tool()
    async def breaks_stream(ctx: Context) -> str:
        """Closes its answer's stream mid-call (the client resumes it), then answers."""
        await ctx.report_progress(1, 2, "before the break")
        # The SDK writes the stream's priming event (its first id) from another task: a
        # close before that write would leave the client nothing to resume from.
        await anyio.sleep(0.2)
        await ctx.close_sse_stream()
        await anyio.sleep(0.3)
        return "after the break"

    return server


@pytest.fixture
def wrapped() -> Iterator[tuple[str, Wrapper]]:
    """The test upstream behind a :class:`Wrapper` (both eras)."""
    wrapper = Wrapper(make_server("echo").streamable_http_app(transport_security=ALLOW_LOCAL))
    url, stop = serve_in_thread(wrapper)
    try:
        yield url, wrapper
    finally:
        stop()


@pytest.fixture
def handshake_only() -> Iterator[tuple[str, Wrapper]]:
    """An upstream that speaks only the handshake era, with resumable streams."""
    server = _resumable_server()
    app = server.streamable_http_app(transport_security=ALLOW_LOCAL, retry_interval=100)
    store_per_session(server.session_manager)
    wrapper = Wrapper(app, handshake_only=True)
    url, stop = serve_in_thread(wrapper)
    try:
        yield url, wrapper
    finally:
        stop()


async def _ask_nothing(_: Any, params: Any) -> Any:
    raise AssertionError("not asked in these tests")


@pytest.mark.parametrize("mode", ERAS)
async def test_the_upstream_sees_the_callers_own_request(
    gateway: Gateway, wrapped: tuple[str, Wrapper], mode: str
) -> None:
    url, upstream = wrapped
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=url)
    user = await quick_member(gateway, credits=10)

    # A 2026-07-28 caller that may be asked declares it on every request.
    options = {"elicitation_callback": _ask_nothing} if mode != "legacy" else {}
    async with connect(gateway, user.key, mode, **options) as client:
        echoed = await client.call_tool("echo__echo", {"text": "as sent"})

    assert text_of(echoed) == "as sent"
    [sent] = upstream.tool_calls
    assert sent["params"]["name"] == "echo"
    assert sent["params"]["arguments"] == {"text": "as sent"}
    meta = sent["params"]["_meta"]
    assert meta["io.modelcontextprotocol/clientInfo"]["name"] != "tollgate"
    declared = meta["io.modelcontextprotocol/clientCapabilities"]
    assert ("elicitation" in declared) == (mode != "legacy")
    assert "mcp_" not in json.dumps(sent), "the caller's key never goes upstream"


@pytest.mark.parametrize("mode", ERAS)
async def test_a_handshake_era_upstream_that_forgot_the_session_gets_a_new_one(
    gateway: Gateway, handshake_only: tuple[str, Wrapper], mode: str
) -> None:
    url, upstream = handshake_only
    admin = await quick_member(gateway, role=Role.ADMIN)
    added = await register_upstream(gateway, admin, name="old", url=url, price=2)
    assert added["protocol_era"] not in MODERN_PROTOCOL_VERSIONS
    user = await quick_member(gateway, credits=10)

    async with connect(gateway, user.key, mode) as client:
        first = await client.call_tool("old__echo", {"text": "one"})
        opened = upstream.initialized
        upstream.forget_session = True
        second = await client.call_tool("old__echo", {"text": "two"})

    assert (text_of(first), text_of(second)) == ("one", "two")
    assert upstream.initialized == opened + 1, "one new session, then the call went through"
    calls = await wait_settled(gateway.runtime, user.account_id)
    assert [c.credits_charged for c in calls] == [2, 2]


@pytest.mark.parametrize("mode", ERAS)
async def test_a_stream_the_upstream_closes_mid_call_is_resumed(
    gateway: Gateway, handshake_only: tuple[str, Wrapper], mode: str
) -> None:
    url, _ = handshake_only
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="old", url=url)
    user = await quick_member(gateway, credits=10)

    reported: list[float] = []

    async def note(progress: float, total: float | None, message: str | None) -> None:
        reported.append(progress)

    async with connect(gateway, user.key, mode) as client:
        answer = await client.call_tool("old__breaks_stream", {}, progress_callback=note)

    assert (answer.is_error, text_of(answer)) == (False, "after the break")
    assert reported == [1]
    [call] = await wait_settled(gateway.runtime, user.account_id)
    assert (call.success, call.credits_charged) == (True, 1)


@pytest.mark.parametrize("mode", ERAS)
async def test_calls_take_the_sdks_path_when_forwarding_is_off(
    settings: Settings, upstream: Upstream, mode: str
) -> None:
    async with serving(settings.model_copy(update={"forward_tool_calls": False})) as gateway:
        admin = await quick_member(gateway, role=Role.ADMIN)
        await register_upstream(gateway, admin, name="echo", url=upstream.url, price=3)
        user = await quick_member(gateway, credits=10)
        async with connect(gateway, user.key, mode) as client:
            echoed = await client.call_tool("echo__echo", {"text": "by the SDK"})
            failed = await client.call_tool("echo__fail", {})
        calls = await wait_settled(gateway.runtime, user.account_id)

    assert text_of(echoed) == "by the SDK"
    assert failed.is_error
    assert [(c.error_code, c.credits_charged) for c in calls] == [(None, 3), ("tool_error", 3)]


@pytest.mark.parametrize("mode", ERAS)
async def test_a_result_larger_than_any_read_buffer_arrives_whole(
    gateway: Gateway, handshake_only: tuple[str, Wrapper], mode: str
) -> None:
    url, _ = handshake_only  # it answers calls as event streams: one event, one long line
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="old", url=url)
    user = await quick_member(gateway, credits=10)
    text = "0123456789abcdef" * 40_000  # 640 kB

    async with connect(gateway, user.key, mode) as client:
        echoed = await client.call_tool("old__echo", {"text": text})

    assert text_of(echoed) == text


async def test_a_long_silent_call_is_kept_alive_with_pings(
    gateway: Gateway, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(forward, "KEEPALIVE_SECONDS", 0.2)
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=upstream.url)
    user = await quick_member(gateway, credits=10)
    version = "2026-07-28"
    meta = {
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    call = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "echo__slow", "arguments": {"seconds": 1}, "_meta": meta},
    }
    headers = {
        "Authorization": f"Bearer {user.key}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": version,
        "Mcp-Method": "tools/call",
        "Mcp-Name": "echo__slow",
    }

    async with http_to(gateway) as http:
        answer = await http.post("/mcp", json=call, headers=headers)

    assert answer.headers["content-type"].startswith("text/event-stream")
    assert ": ping" in answer.text
    [data] = [line for line in answer.text.splitlines() if line.startswith("data: ")]
    result = json.loads(data.removeprefix("data: "))
    assert result["id"] == 7
    assert result["result"]["content"][0]["text"] == "slept 1.0"


async def test_a_call_that_finds_its_upstream_gone_shows_it_down_at_once(
    lingering_upstream: StoppableUpstream, gateway: Gateway
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=lingering_upstream.url, price=2)
    user = await quick_member(gateway, credits=10)

    async with connect(gateway, user.key, "2026-07-28") as client:
        assert text_of(await client.call_tool("echo__echo", {"text": "up"})) == "up"
        await lingering_upstream.begin_shutdown()  # no new connection gets through
        failed = await client.call_tool("echo__echo", {"text": "anyone?"})

    async def shown_down() -> bool:
        async with http_to(gateway) as http:
            described = await http.get("/api/v1/upstreams/echo", headers=admin.jwt_headers)
        return bool(described.json()["state"] == "down")

    # Not left to the next periodic check (a minute): the failed call had its session renewed.
    await eventually(shown_down, "the upstream shows down", timeout=10)
    assert failed.is_error
    assert "cannot reach the upstream" in text_of(failed)
    calls = await wait_settled(gateway.runtime, user.account_id)
    assert [c.credits_charged for c in calls] == [2, 0]
