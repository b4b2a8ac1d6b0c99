"""Handshake-era MCP sessions that work across processes and hosts.

The SDK keeps a legacy (``initialize``) session in the memory of the process that opened it.
With several processes behind one address, the next request of that session may land on
another one. So each process, when the cache is shared (Redis), opens an internal listener
serving the same app, records ``session id -> its listener's URL`` in the cache when it opens
a session (refreshed while the session lives, removed when it ends), and forwards a request
for a session it does not hold to the owner: method, headers (Authorization too: the owner
authenticates as usual), body, and the response streamed back (SSE included). A forwarded
request carries a mark only the deployment can make (derived from ``SECRET_KEY``), so it is
never forwarded again; a session known nowhere gets the SDK's own 404. 2026-07-28 requests
(stateless) are never touched.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import anyio
import httpx
import uvicorn
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tollgate.core.asgi import read_body
from tollgate.core.cache import Cache
from tollgate.core.errors import JSONRPC_INVALID_REQUEST, jsonrpc_error_response
from tollgate.core.settings import Settings
from tollgate.gateway.servers import server_of_path

MCP_PATH = "/mcp"
"""The endpoint of ``gateway.server``; virtual servers' paths are routed the same way."""


def _routed(path: str) -> bool:
    return path == MCP_PATH or server_of_path(path) is not None


logger = logging.getLogger(__name__)

OWNER_KEY_PREFIX = "mcp-session-owner:"
"""Cache key of a legacy session's owning process (its internal listener URL)."""

OWNER_TTL_SECONDS = 90.0
"""An owner entry outlives a crashed process by at most this long (then: 404, re-initialize)."""

OWNER_REFRESH_SECONDS = 30.0
"""How often a process refreshes its live sessions' entries (a third of the TTL)."""

FORWARD_CONNECT_TIMEOUT_SECONDS = 5.0
"""An owner that does not accept a connection by then is taken for gone."""

FORWARDED_HEADER = "x-tollgate-forwarded"
"""Marks a request one process forwarded to another; never forwarded again."""

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
"""Headers that belong to one connection, not to the request or response they carry."""

_PROTOCOL_VERSION_HEADER = b"mcp-protocol-version"


def forward_mark(secret_key: str) -> str:
    """The value of :data:`FORWARDED_HEADER`: outside clients cannot make it without the secret."""
    return hmac.new(secret_key.encode(), b"tollgate-session-forward", hashlib.sha256).hexdigest()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class SessionRouter:
    """ASGI wrapper in front of ``/mcp`` that sends each legacy session's requests to its owner.

    Inactive (a plain pass-through) until :meth:`start` gives it an internal URL: with the
    memory cache there is one process and nothing to route.
    """

    def __init__(
        self, app: ASGIApp, manager: StreamableHTTPSessionManager, cache: Cache, secret_key: str
    ) -> None:
        self.app = app
        self.manager = manager
        self.cache = cache
        self.mark = forward_mark(secret_key)
        self.internal_url: str | None = None
        self._owned: set[str] = set()
        self._client: httpx.AsyncClient | None = None

    def _holds(self, session_id: str) -> bool:
        # The SDK has no public accessor for its open sessions.
        return session_id in self.manager._server_instances

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.internal_url is None or not _routed(scope["path"]):
            await self.app(scope, receive, send)
            return
        version = _header(scope, _PROTOCOL_VERSION_HEADER)
        if version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
            await self.app(scope, receive, send)  # 2026-07-28: stateless, any process serves it
            return
        forwarded = hmac.compare_digest(_header(scope, FORWARDED_HEADER.encode()) or "", self.mark)
        session_id = _header(scope, MCP_SESSION_ID_HEADER.encode())
        if session_id is None:
            await self.app(scope, receive, self._registering(send))
            return
        if self._holds(session_id) or forwarded:
            await self.app(scope, receive, send)
            await self._forget_if_closed(session_id)
            return
        owner = await self.cache.get(OWNER_KEY_PREFIX + session_id)
        if owner is None or owner == self.internal_url:
            await self.app(scope, receive, send)  # unknown everywhere: the SDK's 404
            return
        await self._forward(owner, session_id, scope, receive, send)

    def _registering(self, send: Send) -> Send:
        """Wrap ``send``: a session this response opens is recorded before the client sees it."""

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                for key, value in message.get("headers", []):
                    if key.lower() == MCP_SESSION_ID_HEADER.encode():
                        await self._register(value.decode("latin-1"))
            await send(message)

        return watch

    async def _register(self, session_id: str) -> None:
        assert self.internal_url is not None
        self._owned.add(session_id)
        await self.cache.set(OWNER_KEY_PREFIX + session_id, self.internal_url, OWNER_TTL_SECONDS)

    async def _forget_if_closed(self, session_id: str) -> None:
        if session_id in self._owned and not self._holds(session_id):
            self._owned.discard(session_id)
            await self.cache.delete(OWNER_KEY_PREFIX + session_id)

    async def refresh(self) -> None:
        """Renew the entries of sessions still open here; drop those of sessions that ended."""
        for session_id in list(self._owned):
            if self._holds(session_id):
                await self.cache.set(
                    OWNER_KEY_PREFIX + session_id, self.internal_url or "", OWNER_TTL_SECONDS
                )
            else:
                await self._forget_if_closed(session_id)

    async def _forward(
        self, owner: str, session_id: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        body = await read_body(receive, DEFAULT_MAX_REQUEST_BODY_SIZE)
        if body is None:
            await Response("Request body too large", 413)(scope, receive, send)
            return
        client = self._http()
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k.decode("latin-1").lower() not in HOP_BY_HOP and k != FORWARDED_HEADER.encode()
        ]
        headers.append((FORWARDED_HEADER, self.mark))
        query = scope.get("query_string", b"").decode("latin-1")
        url = f"{owner}{scope['path']}" + (f"?{query}" if query else "")
        request = client.build_request(scope["method"], url, headers=headers, content=body)
        try:
            response = await client.send(request, stream=True)
        except httpx.TransportError:
            logger.warning("owner of MCP session %s unreachable; forgetting it", session_id[:16])
            await self.cache.delete(OWNER_KEY_PREFIX + session_id)
            await jsonrpc_error_response(404, JSONRPC_INVALID_REQUEST, "Session not found")(
                scope, receive, send
            )
            return
        try:
            await _relay(response, receive, send)
        finally:
            await response.aclose()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(None, connect=FORWARD_CONNECT_TIMEOUT_SECONDS),
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=100),
            )
        return self._client

    async def start(self, internal_url: str) -> None:
        """Begin routing: this process's sessions are reachable at ``internal_url``."""
        self.internal_url = internal_url.rstrip("/")

    async def stop(self) -> None:
        """Stop routing and remove this process's entries from the cache."""
        owned, self._owned = list(self._owned), set()
        with suppress(Exception):
            if owned:
                await self.cache.delete(*(OWNER_KEY_PREFIX + sid for sid in owned))
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self.internal_url = None


async def _relay(response: httpx.Response, receive: Receive, send: Send) -> None:
    """Stream the owner's response to the client until it ends or the client goes away."""
    headers = [
        (k.encode("latin-1"), v.encode("latin-1"))
        for k, v in response.headers.multi_items()
        if k.lower() not in HOP_BY_HOP
    ]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    async with anyio.create_task_group() as group:

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            group.cancel_scope.cancel()

        group.start_soon(watch_disconnect)
        async for chunk in response.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        group.cancel_scope.cancel()


@contextmanager
def _access_log_kept() -> Iterator[None]:
    """Keep the process's access log as it is: a ``uvicorn.Config`` with ``access_log=False``
    also silences the shared ``uvicorn.access`` logger, so the public listener's too."""
    access = logging.getLogger("uvicorn.access")
    handlers, propagate = list(access.handlers), access.propagate
    try:
        yield
    finally:
        access.handlers[:] = handlers
        access.propagate = propagate


class InternalListener:
    """A second HTTP server inside this process, on the internal address, serving the same app."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        with _access_log_kept():
            config = uvicorn.Config(
                app,
                host=settings.internal_host,
                port=settings.internal_port,
                lifespan="off",
                log_config=None,
                access_log=False,
                proxy_headers=False,
            )
        self.server = uvicorn.Server(config)
        self.settings = settings
        self._task: asyncio.Task[Any] | None = None

    async def start(self) -> str:
        """Listen and return the URL other processes reach this one at."""
        config = self.server.config
        config.load()
        self.server.lifespan = config.lifespan_class(config)
        await self.server.startup()  # not serve(): that would take over the signal handlers
        if self.server.should_exit:
            raise RuntimeError(
                f"internal listener could not bind {self.settings.internal_host}:"
                f"{self.settings.internal_port}"
            )
        self._task = asyncio.create_task(self.server.main_loop())
        port = self.server.servers[0].sockets[0].getsockname()[1]
        template = self.settings.internal_url or f"http://{self.settings.internal_host}:{{port}}"
        return template.replace("{port}", str(port))

    async def stop(self) -> None:
        """Stop listening (open forwarded streams are closed)."""
        if self._task is None:
            return
        self.server.should_exit = True
        self.server.force_exit = True
        await self._task
        await self.server.shutdown()
        self._task = None
