"""Request bodies are capped by ``TOLLGATE_MAX_BODY_BYTES``: a declared length over it is
refused before any of the body is read, a chunked body as soon as its count passes it, and a
body within it reaches the route whole. Over a real server on 127.0.0.1 where what matters
is what the server reads off the socket; over ASGI otherwise."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import PASSWORD, make_user, running
from tests.gateway.upstream import serve_in_thread
from tollgate.app import create_app
from tollgate.core.settings import DEFAULT_MAX_BODY_BYTES, Settings

LOGIN = "/api/v1/auth/login"
"""A public route that reads its body before anything else: no valid auth is needed."""

FORM = {"Content-Type": "application/x-www-form-urlencoded"}

REPLY_SECONDS = 10.0
"""A refusal arrives well within this, or the server is waiting for a body it should not."""

SMALL_LIMIT = 64 * 1024
"""A limit small enough to pass quickly in a test, large enough to span several chunks."""


@asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[tuple[str, int]]:
    """Tollgate served by uvicorn on 127.0.0.1 for the block; yields (host, port)."""
    app = create_app(settings, configure_logs=False)
    url, stop = await asyncio.to_thread(serve_in_thread, app, "")
    try:
        address = urlsplit(url)
        assert address.hostname is not None
        assert address.port is not None
        yield address.hostname, address.port
    finally:
        await asyncio.to_thread(stop)


@asynccontextmanager
async def asgi_client(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """The app (lifespan running) and an HTTP client talking to it over ASGI."""
    async with running(create_app(settings, configure_logs=False)) as app:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http, app


def exchange(address: tuple[str, int], head: bytes, body: bytes = b"") -> tuple[int, Any]:
    """Send a request head (and the start of a body, never its end), then read the answer
    until the server closes: its status and JSON body. Times out if the server waits for
    more of the body."""
    with socket.create_connection(address, timeout=REPLY_SECONDS) as connection:
        connection.sendall(head + body)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    status_line, _, rest = received.partition(b"\r\n")
    _, _, payload = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), json.loads(payload)


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    """``data`` in chunked transfer coding, without the final zero-length chunk."""
    for start in range(0, len(data), size):
        piece = data[start : start + size]
        yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"


def padded_form(form: str, size: int = DEFAULT_MAX_BODY_BYTES) -> bytes:
    """``form`` padded with extra fields (each under the form parser's own 1 MiB per field)
    to exactly ``size`` bytes."""
    parts = [form]
    length = len(form)
    number = 0
    while length < size:
        prefix = f"&pad{number}="
        room = size - length - len(prefix)
        value = "p" * max(0, min(room, 512 * 1024))
        parts.append(prefix + value)
        length += len(prefix) + len(value)
        number += 1
    body = "".join(parts).encode()
    assert len(body) == size
    return body


def refused_as_too_large(body: Any, limit: int) -> bool:
    """Whether ``body`` is Tollgate's 413 error for ``limit``."""
    return bool(
        body
        == {
            "detail": {
                "code": "body_too_large",
                "message": f"The request body is larger than {limit} bytes",
            }
        }
    )


async def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read(
    settings: Settings,
) -> None:
    head = (
        f"POST {LOGIN} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {DEFAULT_MAX_BODY_BYTES + 1}\r\n\r\n"
    ).encode()
    async with served(settings) as address:
        status, body = await asyncio.to_thread(exchange, address, head)  # no body sent at all
    assert status == 413
    assert refused_as_too_large(body, DEFAULT_MAX_BODY_BYTES)


async def test_a_chunked_body_is_refused_once_it_passes_the_limit_without_the_rest(
    settings: Settings,
) -> None:
    limited = settings.model_copy(update={"max_body_bytes": SMALL_LIMIT})
    head = (
        f"POST {LOGIN} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    start = b"".join(chunked(b"x" * (SMALL_LIMIT + 1), 8192))  # the body never ends
    async with served(limited) as address:
        status, body = await asyncio.to_thread(exchange, address, head, start)
    assert status == 413
    assert refused_as_too_large(body, SMALL_LIMIT)


async def test_a_chunked_body_over_the_limit_is_not_read_to_its_end(settings: Settings) -> None:
    limited = settings.model_copy(update={"max_body_bytes": SMALL_LIMIT})
    sent: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(1000):
            sent.append(8192)
            yield b"x" * 8192

    async with asgi_client(limited) as (http, _):
        response = await http.post(LOGIN, content=endless(), headers=FORM)
    assert response.status_code == 413
    assert refused_as_too_large(response.json(), SMALL_LIMIT)
    assert sum(sent) <= SMALL_LIMIT + 8192  # read up to the chunk that passed, no further


@pytest.mark.parametrize("transfer", ["content-length", "chunked"])
async def test_a_body_of_exactly_the_limit_reaches_the_route_whole(
    settings: Settings, transfer: str
) -> None:
    async with asgi_client(settings) as (http, app):
        user = await make_user(app.state.runtime)
        body = padded_form(f"username={user.username}&password={PASSWORD}")

        async def stream() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 65536):
                yield body[start : start + 65536]

        content: Any = body if transfer == "content-length" else stream()
        response = await http.post(LOGIN, content=content, headers=FORM)
    assert response.status_code == 200, response.text
    assert response.json()["access_token"]


def test_the_limit_is_read_from_tollgate_max_body_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().max_body_bytes == DEFAULT_MAX_BODY_BYTES == 4 * 1024 * 1024
    monkeypatch.setenv("TOLLGATE_MAX_BODY_BYTES", "1234")
    assert Settings().max_body_bytes == 1234


async def test_the_setting_moves_the_limit(settings: Settings) -> None:
    body = b"username=nobody&password=" + b"p" * 2000
    lowered = settings.model_copy(update={"max_body_bytes": len(body) - 1})
    async with asgi_client(lowered) as (http, _):
        refused = await http.post(LOGIN, content=body, headers=FORM)
    async with asgi_client(settings) as (http, _):
        accepted = await http.post(LOGIN, content=body, headers=FORM)
    assert refused.status_code == 413
    assert refused_as_too_large(refused.json(), len(body) - 1)
    assert accepted.status_code == 401  # read whole, then the credentials were refused


@pytest.mark.parametrize("path", ["/mcp", "/mcp/"])
async def test_the_mcp_endpoint_is_under_the_limit_too(settings: Settings, path: str) -> None:
    limited = settings.model_copy(update={"max_body_bytes": SMALL_LIMIT})
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping", "pad": "x" * SMALL_LIMIT})
    async with asgi_client(limited) as (http, _):
        response = await http.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert refused_as_too_large(response.json(), SMALL_LIMIT)
