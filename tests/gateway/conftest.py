"""Gateway fixtures: a real upstream MCP server and a real Tollgate server, both on
127.0.0.1, and the official Python client connected in either protocol era."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from sqlalchemy import select

from tests.conftest import make_user, token_for
from tests.gateway.upstream import ALLOW_LOCAL, HeaderRecorder, make_server, serve_in_thread
from tollgate.accounts.models import CallStatus, McpAccount, ToolCall
from tollgate.app import create_app
from tollgate.core.runtime import Runtime
from tollgate.core.settings import Settings
from tollgate.identity.models import Role

SETTLE_DEADLINE_SECONDS = 10.0
"""Settlement is batched off the request path; it lands well within this."""


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
    """The account's calls once none is pending (bounded wait; settlement is batched)."""
    deadline = asyncio.get_running_loop().time() + SETTLE_DEADLINE_SECONDS
    while True:
        async with runtime.sessions() as session:
            rows = list(
                (
                    await session.execute(
                        select(ToolCall)
                        .where(ToolCall.account_id == account_id)
                        .order_by(ToolCall.id)
                    )
                ).scalars()
            )
        if all(r.status == CallStatus.SETTLED for r in rows):
            return rows
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"calls still pending: {[r.request_id for r in rows]}")
        await asyncio.sleep(0.05)


EraParam = Callable[[], str]
ERAS = ["legacy", "2026-07-28"]
"""Both protocol eras the gateway serves on one path."""
