"""Data-access fixtures: the demo helpdesk database, a real Tollgate serving ``/mcp/ws`` on
127.0.0.1, and a small WebSocket client speaking seed 002's protocol."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.gateway.conftest import Gateway
from tests.gateway.upstream import serve_in_thread
from tollgate.app import create_app
from tollgate.core.runtime import Runtime
from tollgate.core.settings import HELPDESK_FILE, Settings
from tollgate.data.demo import create_helpdesk

MCP_TOKEN = "dev-token-12345"
"""The seed's development token."""

REPLY_SECONDS = 10.0
"""A reply (or the close after a refusal) arrives well within this."""

SENSITIVE_COLUMNS = ("password_hash", "totp_secret", "api_key")
"""The demo ``users`` columns that must never leave the server."""


def helpdesk_path(settings: Settings) -> Path:
    """Where the demo helpdesk database of ``settings`` lives."""
    return settings.data_dir / HELPDESK_FILE


@pytest.fixture
def data_settings(settings: Settings) -> Settings:
    """The test's settings with MCP enabled and the demo helpdesk database created."""
    create_helpdesk(helpdesk_path(settings))
    return settings.model_copy(update={"mcp_enabled": True, "mcp_token": MCP_TOKEN})


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Gateway]:
    """Tollgate served by uvicorn in a thread for the block (its lifespan runs there), with
    a runtime of the test's own for the database."""
    app = create_app(settings, configure_logs=False)
    url, stop = await asyncio.to_thread(serve_in_thread, app, "")
    runtime = Runtime.build(settings)
    try:
        yield Gateway(url, runtime, app)
    finally:
        await runtime.close()
        await asyncio.to_thread(stop)


@pytest.fixture
async def live(data_settings: Settings) -> AsyncIterator[Gateway]:
    """A Tollgate with ``/mcp/ws`` enabled over the demo helpdesk database."""
    async with serving(data_settings) as running:
        yield running


def ws_url(gateway: Gateway, query: str = "") -> str:
    """The ``/mcp/ws`` address of ``gateway`` (with a query string, if given)."""
    return gateway.url.replace("http://", "ws://", 1) + "/mcp/ws" + (f"?{query}" if query else "")


@asynccontextmanager
async def ws(
    gateway: Gateway, token: str | None = MCP_TOKEN, *, query: str = ""
) -> AsyncIterator[ClientConnection]:
    """A WebSocket on ``/mcp/ws``, with ``token`` in ``X-MCP-Token`` (none when None)."""
    headers = {"X-MCP-Token": token} if token is not None else {}
    async with connect(
        ws_url(gateway, query), additional_headers=headers, open_timeout=REPLY_SECONDS
    ) as socket:
        yield socket


async def receive(socket: ClientConnection) -> dict[str, Any]:
    """The next reply (bounded wait)."""
    frame = await asyncio.wait_for(socket.recv(), REPLY_SECONDS)
    body: dict[str, Any] = json.loads(frame)
    return body


async def ask(socket: ClientConnection, request: dict[str, Any] | str | bytes) -> dict[str, Any]:
    """Send one request (an object is sent as JSON text) and return its reply."""
    await socket.send(json.dumps(request) if isinstance(request, dict) else request)
    return await receive(socket)


async def closed_code(socket: ClientConnection) -> int | None:
    """The close code once the server closed the connection (bounded wait)."""
    try:
        extra = await asyncio.wait_for(socket.recv(), REPLY_SECONDS)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
    raise AssertionError(f"expected the connection to close, got {extra!r}")


def sqlite_rows(path: Path, query: str) -> list[tuple[Any, ...]]:
    """Rows read straight from a SQLite file (read-only), not through Tollgate."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return list(db.execute(query))


def secret_values(path: Path) -> set[str]:
    """Every value of the demo ``users`` table's sensitive columns."""
    rows = sqlite_rows(path, f"SELECT {', '.join(SENSITIVE_COLUMNS)} FROM users")
    return {str(value) for row in rows for value in row if value is not None}


def checksum(path: Path) -> str:
    """A digest of every row of every table in a SQLite file (and of the file's bytes)."""
    digest = hashlib.sha256(path.read_bytes())
    tables = sqlite_rows(path, "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
    for (table,) in tables:
        for row in sqlite_rows(path, f'SELECT * FROM "{table}" ORDER BY rowid'):
            digest.update(repr((table, row)).encode())
    return digest.hexdigest()
