"""A reverse proxy that adds an account key: the conformance suite has no option for an
``Authorization`` header, which every MCP client configuration of Tollgate carries."""

from __future__ import annotations

import httpx
from starlette.types import Receive, Scope, Send

DROPPED_HEADERS = frozenset({b"authorization", b"content-length", b"connection"})
"""Request headers the proxy sets itself (``Host`` is kept: Tollgate checks it)."""

DROPPED_RESPONSE_HEADERS = frozenset({b"content-length", b"transfer-encoding", b"connection"})


class KeyProxy:
    """Forwards every HTTP request to ``target`` with ``Authorization: Bearer <key>``,
    streaming the answer back (Server-Sent Events included)."""

    def __init__(self, target: str, key: str) -> None:
        self.target = target.rstrip("/")
        self.key = key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await _body(receive)
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in DROPPED_HEADERS]
        headers.append((b"authorization", f"Bearer {self.key}".encode()))
        query = scope.get("query_string", b"").decode()
        url = f"{self.target}{scope['path']}" + (f"?{query}" if query else "")
        async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=None)) as client:
            request = client.build_request(scope["method"], url, headers=headers, content=body)
            response = await client.send(request, stream=True)
            await _relay(response, send)


async def _relay(response: httpx.Response, send: Send) -> None:
    """Stream ``response`` back as the proxy's own answer."""
    try:
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": [
                    (k, v)
                    for k, v in response.headers.raw
                    if k.lower() not in DROPPED_RESPONSE_HEADERS
                ],
            }
        )
        async for chunk in response.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        await response.aclose()


async def _body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)
