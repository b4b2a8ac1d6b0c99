"""Gateway fixtures: a real upstream MCP server and a real Tollgate server, both on
127.0.0.1, and the official Python client connected in either protocol era."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer
from mcp_types import TextContent
from sqlalchemy import select

from tests.conftest import make_user, token_for
from tests.gateway.upstream import (
    ALLOW_LOCAL,
    STARTUP_SECONDS,
    HeaderRecorder,
    make_server,
    serve_in_thread,
    started,
)
from tests.waiting import eventually, eventually_sync
from tollgate.accounts.holds import CreditHolds
from tollgate.accounts.models import CallStatus, McpAccount, ToolCall
from tollgate.app import create_app
from tollgate.core.runtime import Runtime
from tollgate.core.settings import Settings
from tollgate.core.state import app_state
from tollgate.identity.models import Role

SETTLE_DEADLINE_SECONDS = 10.0
"""A call is settled before its answer; one cut short (cancelled) lands well within this."""


@dataclass
class Upstream:
    """A running test upstream."""

    url: str
    recorder: HeaderRecorder


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    """The SDK-built test upstream over Streamable HTTP, recording the headers it gets."""
    recorder = HeaderRecorder(
        make_server("echo").streamable_http_app(transport_security=ALLOW_LOCAL)
    )
    url, stop = serve_in_thread(recorder)
    try:
        yield Upstream(url, recorder)
    finally:
        stop()


@dataclass
class Gateway:
    """A Tollgate server on 127.0.0.1 and a runtime of the test's own for the database."""

    url: str
    runtime: Runtime
    app: Any

    @property
    def mcp_url(self) -> str:
        return f"{self.url}/mcp"


@pytest.fixture
def gateway_settings(settings: Settings) -> Settings:
    """Settings of the gateway under test (override with ``model_copy`` in a test)."""
    return settings


@pytest.fixture
async def gateway(gateway_settings: Settings) -> AsyncIterator[Gateway]:
    """Tollgate served by uvicorn in a thread; its lifespan runs there."""
    app = create_app(gateway_settings, configure_logs=False)
    url, stop = await asyncio.to_thread(serve_in_thread, app, "")
    runtime = Runtime.build(gateway_settings)
    try:
        yield Gateway(url, runtime, app)
    finally:
        await runtime.close()
        await asyncio.to_thread(stop)


@dataclass
class Member:
    """A user with an enabled MCP account."""

    user_id: int
    email: str
    jwt: str
    key: str
    account_id: int

    @property
    def jwt_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.jwt}"}


async def new_member(
    gateway: Gateway, *, role: str = Role.USER, credits: int | None = None
) -> Member:
    """A user whose MCP account is enabled (optionally with a given balance)."""
    user = await make_user(gateway.runtime, role=role, is_superuser=role == Role.ADMIN)
    jwt = token_for(gateway.runtime, user)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        enabled = await http.post("/api/mcp/enable", headers={"Authorization": f"Bearer {jwt}"})
    assert enabled.status_code == 200, enabled.text
    body = enabled.json()
    if credits is not None:
        await set_balance(gateway.runtime, body["account"]["id"], credits)
    return Member(user.id, user.email, jwt, body["mcp_api_key"], body["account"]["id"])


async def set_balance(runtime: Runtime, account_id: int, credits: int) -> None:
    """Move an account's balance through an adjustment ledger row (the ledger stays whole)."""
    from tollgate.accounts import credits as ledger
    from tollgate.core.database import transaction

    async with transaction(runtime.sessions) as session:
        account = await session.get(McpAccount, account_id)
        assert account is not None
        delta = credits - account.credits_balance
        if delta:
            await ledger.adjust(
                session, account_id, delta, reason="test", actor="test", idempotency_key="set"
            )


async def add_upstream(gateway: Gateway, admin: Member, **body: Any) -> dict[str, Any]:
    """Register an upstream through the admin API; returns its description."""
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as http:
        response = await http.post("/api/v1/upstreams", json=body, headers=admin.jwt_headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


@asynccontextmanager
async def mcp_client(gateway: Gateway, key: str, mode: str = "legacy") -> AsyncIterator[Client]:
    """The official client connected to ``/mcp`` with ``key``, in ``mode``."""
    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {key}"}, timeout=httpx2.Timeout(30, read=120)
    )
    try:
        async with Client(
            streamable_http_client(gateway.mcp_url, http_client=http), mode=mode
        ) as client:
            yield client
    finally:
        await http.aclose()


async def balance(runtime: Runtime, account_id: int) -> int:
    """The account's balance now."""
    async with runtime.sessions() as session:
        account = await session.get(McpAccount, account_id, populate_existing=True)
        assert account is not None
        return account.credits_balance


async def wait_settled(runtime: Runtime, account_id: int) -> list[ToolCall]:
    """The account's calls once none is pending (bounded wait: a cancelled call is settled
    as the gateway notices the cancellation)."""
    rows: list[ToolCall] = []

    async def settled() -> bool:
        rows[:] = await calls_of(runtime, account_id)
        return all(r.status != CallStatus.PENDING for r in rows)

    def pending() -> str:
        return f"calls settled; still pending: {[r.request_id for r in rows]}"

    await eventually(settled, pending, SETTLE_DEADLINE_SECONDS)
    return rows


ERAS = ["legacy", "2026-07-28"]
"""Both protocol eras the gateway serves on one path."""


# Helpers of the metering, auth, broker, catalogue, stdio and crash tests.

LOCAL_TLS = ssl.create_default_context()
"""One TLS context for every test client: httpx builds one per client otherwise (~0.1 s
each here, and a test makes several), though the test servers speak plain HTTP."""


def http_to(gateway: Gateway) -> httpx.AsyncClient:
    """An HTTP client for the gateway's API."""
    return httpx.AsyncClient(base_url=gateway.url, timeout=60, verify=LOCAL_TLS)


async def register_upstream(gateway: Gateway, admin: Member, **body: Any) -> dict[str, Any]:
    """Like :func:`add_upstream`, on a client with the shared TLS context."""
    async with http_to(gateway) as http:
        response = await http.post("/api/v1/upstreams", json=body, headers=admin.jwt_headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def connect(
    gateway: Gateway, key: str, mode: str = "legacy", **options: Any
) -> AbstractAsyncContextManager[Client]:
    """The official client connected to the gateway's ``/mcp`` (see :func:`mcp_client_at`)."""
    return mcp_client_at(gateway.mcp_url, key, mode, **options)


async def quick_member(
    gateway: Gateway,
    *,
    role: str = Role.USER,
    credits: int | None = None,
    superuser: bool | None = None,
) -> Member:
    """Like :func:`new_member`, for a user who signs in by token only: no password to hash
    (argon2 takes ~0.4 s a user here, which adds up over the suite). Admins are superusers
    unless ``superuser=False``."""
    from tollgate.core.database import transaction
    from tollgate.identity import service as users

    name = f"user-{uuid.uuid4().hex[:8]}"
    async with transaction(gateway.runtime.sessions) as session:
        user = await users.create_user(
            session,
            username=name,
            email=f"{name}@example.com",
            password=None,
            role=role,
            is_superuser=role == Role.ADMIN if superuser is None else superuser,
        )
    jwt = token_for(gateway.runtime, user)
    async with http_to(gateway) as http:
        enabled = await http.post("/api/mcp/enable", headers={"Authorization": f"Bearer {jwt}"})
    assert enabled.status_code == 200, enabled.text
    body = enabled.json()
    if credits is not None:
        await set_credits(gateway.runtime, body["account"]["id"], credits)
    return Member(user.id, user.email, jwt, body["mcp_api_key"], body["account"]["id"])


async def set_credits(runtime: Runtime, account_id: int, credits: int) -> None:
    """Like :func:`set_balance`, usable for any number of accounts and times in a test
    (``set_balance`` spends one idempotency key for the whole database)."""
    from tollgate.accounts import credits as ledger
    from tollgate.core.database import transaction

    async with transaction(runtime.sessions) as session:
        account = await session.get(McpAccount, account_id)
        assert account is not None
        delta = credits - account.credits_balance
        if delta:
            await ledger.adjust(
                session,
                account_id,
                delta,
                reason="test",
                actor="test",
                idempotency_key=f"set:{account_id}:{uuid.uuid4().hex}",
            )


@asynccontextmanager
async def mcp_client_at(
    url: str, key: str, mode: str = "legacy", **options: Any
) -> AsyncIterator[Client]:
    """The official client connected to an ``/mcp`` URL, with extra ``Client`` options
    (``message_handler=`` ...)."""
    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {key}"},
        timeout=httpx2.Timeout(30, read=120),
        verify=LOCAL_TLS,
    )
    try:
        async with Client(
            streamable_http_client(url, http_client=http), mode=mode, **options
        ) as client:
            yield client
    finally:
        await http.aclose()


@dataclass
class WatchedGateway(Gateway):
    """A gateway whose incoming requests are recorded."""

    requests: RequestRecorder

    async def wait_event_streams(self, count: int = 1) -> None:
        """Wait until ``count`` legacy clients have their notification stream open
        (a notification sent before is lost, by the transport's design)."""

        async def opened() -> bool:
            return self.requests.event_streams >= count

        await eventually(opened, f"{count} event streams open")


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[WatchedGateway]:
    """A gateway like the ``gateway`` fixture's, its requests recorded, stopped when the
    block ends (for tests that look at what its shutdown leaves behind)."""
    app = create_app(settings, configure_logs=False)
    requests = RequestRecorder(app)
    url, stop = await asyncio.to_thread(serve_in_thread, requests, "")
    runtime = Runtime.build(settings)
    try:
        yield WatchedGateway(url, runtime, app, requests)
    finally:
        await runtime.close()
        await asyncio.to_thread(stop)


@pytest.fixture
async def watched_gateway(gateway_settings: Settings) -> AsyncIterator[WatchedGateway]:
    """The ``gateway`` fixture's server, its incoming requests recorded."""
    async with serving(gateway_settings) as served:
        yield served


@dataclass(frozen=True)
class SeenRequest:
    """One HTTP request an upstream received."""

    authorization: str
    session_id: str
    method: str
    """The JSON-RPC method (``Mcp-Method`` header, else the body's), or the HTTP verb."""


class RequestRecorder:
    """ASGI wrapper keeping who sent each request, in which session, for which method."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[SeenRequest] = []
        self.event_streams = 0
        """GET event streams answered so far (a legacy session's channel for notifications:
        the server has registered the stream by the time it starts answering)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        buffered: list[Any] = []
        body = b""
        if scope["method"] == "POST":
            while True:
                message = await receive()
                buffered.append(message)
                body += message.get("body", b"")
                if message["type"] != "http.request" or not message.get("more_body"):
                    break
        self.seen.append(
            SeenRequest(
                headers.get("authorization", ""),
                headers.get("mcp-session-id", ""),
                headers.get("mcp-method") or _json_rpc_method(body) or scope["method"],
            )
        )

        async def replay() -> Any:
            return buffered.pop(0) if buffered else await receive()

        async def send_noting_streams(message: Any) -> None:
            if (
                scope["method"] == "GET"
                and message["type"] == "http.response.start"
                and message["status"] == 200
            ):
                self.event_streams += 1
            await send(message)

        await self.app(scope, replay, send_noting_streams)

    def handshakes(self, authorization: str) -> int:
        """How many sessions were opened with ``authorization`` (initialize or discover)."""
        return sum(
            1
            for r in self.seen
            if r.authorization == authorization and r.method in HANDSHAKE_METHODS
        )


HANDSHAKE_METHODS = frozenset({"initialize", "server/discover"})
"""What a client sends once per new session: the handshake of either era."""


def _json_rpc_method(body: bytes) -> str:
    try:
        message = json.loads(body)
    except ValueError:
        return ""
    method = message.get("method") if isinstance(message, dict) else None
    return method if isinstance(method, str) else ""


@dataclass
class StoppableUpstream:
    """A test upstream the test can stop (or put into shutdown) while the gateway runs."""

    url: str
    recorder: RequestRecorder
    headers: HeaderRecorder
    server: uvicorn.Server
    thread: threading.Thread
    mcp: MCPServer
    """The upstream's MCP server, to change what it offers behind the gateway's back."""

    async def begin_shutdown(self) -> None:
        """Stop accepting connections (returns once they are refused); streams already
        open stay open until they end or the grace period passes."""
        self.server.should_exit = True
        port = int(self.url.split(":")[2].split("/")[0])
        await eventually(lambda: _refused(port), f"the upstream on {port} refuses connections")

    def stop(self) -> None:
        """Stop serving altogether (open streams are cut after a short grace period)."""
        self.server.should_exit = True
        self.thread.join(30)
        assert not self.thread.is_alive(), "the upstream did not stop"


UPSTREAM_GRACE_SECONDS = 2
"""How long a stopping upstream lets its open streams finish before cutting them."""


def start_upstream(name: str = "echo", grace: int = UPSTREAM_GRACE_SECONDS) -> StoppableUpstream:
    """The SDK-built test upstream on 127.0.0.1, recording every request it gets."""
    mcp = make_server(name)
    headers = HeaderRecorder(mcp.streamable_http_app(transport_security=ALLOW_LOCAL))
    recorder = RequestRecorder(headers)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(
            recorder, log_level="warning", lifespan="on", timeout_graceful_shutdown=grace
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    eventually_sync(lambda: started(server, thread), "the upstream starts", STARTUP_SECONDS)
    return StoppableUpstream(
        f"http://127.0.0.1:{sock.getsockname()[1]}/mcp", recorder, headers, server, thread, mcp
    )


@pytest.fixture
def stoppable_upstream() -> Iterator[StoppableUpstream]:
    """A test upstream the test may stop; stopped at the end in any case."""
    running = start_upstream()
    try:
        yield running
    finally:
        running.server.should_exit = True
        running.thread.join(30)


def text_of(result: Any) -> str:
    """The text of a tool result's first content block."""
    block = result.content[0]
    assert isinstance(block, TextContent), block
    return block.text


async def tool_names(client: Client) -> set[str]:
    """The tool names ``tools/list`` offers now."""
    return {t.name for t in (await client.list_tools()).tools}


def credits_in_flight(gateway: Gateway, account_id: int) -> int:
    """Credits this gateway process has reserved for the account's calls in flight (they
    are in memory only: a call is recorded and charged when it ends)."""
    return app_state(gateway.app).get(CreditHolds).held(account_id)[1]


async def calls_of(runtime: Runtime, account_id: int) -> list[ToolCall]:
    """The account's call records now (a call is recorded when it ends)."""
    async with runtime.sessions() as session:
        query = select(ToolCall).where(ToolCall.account_id == account_id).order_by(ToolCall.id)
        return list((await session.execute(query)).scalars())


async def _refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    writer.close()
    await writer.wait_closed()
    return False


LINGER_SECONDS = 30
"""Grace period of a lingering upstream: longer than any test keeps it stopping."""


@pytest.fixture
def lingering_upstream() -> Iterator[StoppableUpstream]:
    """An upstream whose shutdown keeps open streams for long: after ``begin_shutdown`` the
    gateway still holds its session (and its tools) but no new connection gets through,
    until a call or a refresh notices."""
    running = start_upstream(grace=LINGER_SECONDS)
    try:
        yield running
    finally:
        running.server.should_exit = True
        running.thread.join(LINGER_SECONDS + 10)
