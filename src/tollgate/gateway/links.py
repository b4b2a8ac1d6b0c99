"""Raw JSON-RPC exchanges with one upstream over Streamable HTTP: the forward path's leg.

An :class:`UpstreamLink` posts a request as bytes and yields what the upstream sends back on
that request's answer (notifications, requests to the client, then the response) as decoded
JSON, without the SDK client's session machinery. It speaks the upstream's own era: a
2026-07-28 upstream is stateless (the routing headers say what each request is); a
handshake-era upstream gets a session of the link's own (``initialize`` once, opened again
when the upstream forgets it), and an event stream it closes mid-call is resumed with
``Last-Event-ID``, as the protocol's polling pattern asks.

The pooled SDK session (:mod:`tollgate.gateway.connections`) still owns the upstream's
catalogue, health and list changes; links carry tool calls.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from tollgate import __version__
from tollgate.gateway import wire
from tollgate.gateway.wire import Message

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 15.0
"""An upstream that does not accept a connection by then is taken for unreachable."""

MAX_RESUMPTIONS = 20
"""An upstream that closes a call's event stream more often than this has failed it."""

DEFAULT_RETRY_MS = 1000
"""How long to wait before resuming a closed stream when the upstream named no ``retry``."""

MAX_RETRY_MS = 5000
"""An upstream's ``retry`` is honoured up to this long (a call's own timeout still applies)."""

CLIENT_INFO = {"name": "tollgate", "version": __version__}

ACCEPT_BOTH = "application/json, text/event-stream"


UpstreamRequestHandler = Callable[[Message], Awaitable[Message]]
"""Answers a request the upstream sends the client mid-call (sampling, elicitation, roots):
given the request, returns the JSON-RPC response's ``result`` or ``error`` part."""


class LinkFailure(Exception):
    """The upstream did not answer as an MCP server: unreachable, an HTTP error without a
    JSON-RPC body, a stream that ended without the response. The message is ours, never
    the upstream's text (it may be any address's answer)."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable
        """No connection could be made or kept: the upstream may be gone."""


def _unreachable(exc: BaseException) -> LinkFailure:
    return LinkFailure(f"cannot reach the upstream ({type(exc).__name__})", unreachable=True)


class _SessionGone(Exception):
    """The upstream forgot the link's handshake-era session (404): open a new one."""


def http_client() -> aiohttp.ClientSession:
    """The HTTP client every link of a process shares (one connection pool)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=60),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_SECONDS),
        auto_decompress=True,
    )


class UpstreamLink:
    """Tool calls to one upstream, with one set of headers (its static auth, or a user's
    credential), in the era its pooled session negotiated."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        url: str,
        headers: Mapping[str, str],
        era: str,
        *,
        capabilities: Message | None = None,
    ) -> None:
        self.http = http
        self.url = url
        self.era = era
        self.modern = era in MODERN_PROTOCOL_VERSIONS
        self.capabilities = capabilities or {}
        """What the link's handshake-era session declares to the upstream."""
        self.log_level: str | None = None
        """The level the link's handshake-era session last asked the upstream to log at."""
        self._headers = {
            **headers,
            "content-type": wire.JSON_CONTENT_TYPE,
            "accept": ACCEPT_BOTH,
            MCP_PROTOCOL_VERSION_HEADER: era,
        }
        self._ids = itertools.count(1)
        self._session_id: str | None = None
        self._opening: asyncio.Lock = asyncio.Lock()

    def next_id(self) -> int:
        """A request id no other request on this link uses."""
        return next(self._ids)

    @asynccontextmanager
    async def exchange(
        self,
        message: Message,
        headers: Mapping[str, str] | None = None,
        on_request: UpstreamRequestHandler | None = None,
    ) -> AsyncIterator[AsyncIterator[Message]]:
        """Post ``message`` (a request carrying an id of :meth:`next_id`); yields the
        messages the upstream sends on its answer, the response last. Requests the upstream
        makes mid-call are answered with ``on_request`` (refused without it) and not
        yielded. Leaving early closes the answer (a 2026-07-28 upstream's cancellation)."""
        body = wire.dumps(message)
        response = await self._post(body, headers, retry_gone=True)
        answer = self._answer(response, message["id"], on_request)
        try:
            yield answer
        finally:
            await answer.aclose()
            response.release()

    async def _post(
        self, body: bytes, headers: Mapping[str, str] | None, *, retry_gone: bool
    ) -> aiohttp.ClientResponse:
        session_id = None if self.modern else await self._session()
        sent = {**self._headers, **(headers or {})}
        if session_id is not None:
            sent[MCP_SESSION_ID_HEADER] = session_id
        try:
            response = await self.http.post(self.url, data=body, headers=sent)
        except (aiohttp.ClientError, OSError) as exc:
            raise _unreachable(exc) from exc
        if response.status == 404 and session_id is not None:
            response.release()
            self._forget(session_id)
            if not retry_gone:
                raise LinkFailure("the upstream answered HTTP 404")
            return await self._post(body, headers, retry_gone=False)
        return response

    async def _answer(
        self,
        response: aiohttp.ClientResponse,
        request_id: Any,
        on_request: UpstreamRequestHandler | None,
    ) -> AsyncGenerator[Message, None]:
        content_type = response.content_type
        if content_type == wire.JSON_CONTENT_TYPE:
            yield await _json_answer(response, request_id)
            return
        if response.status != 200 or content_type != wire.SSE_CONTENT_TYPE:
            raise LinkFailure(_http_problem(response.status))
        async for message in self._stream(response, request_id, on_request):
            yield message

    async def _stream(
        self,
        response: aiohttp.ClientResponse,
        request_id: Any,
        on_request: UpstreamRequestHandler | None,
    ) -> AsyncIterator[Message]:
        """Every message of the call's event stream, resumed (handshake era) when the
        upstream closes it before the response."""
        last_id: str | None = None
        retry_ms = DEFAULT_RETRY_MS
        for attempt in range(MAX_RESUMPTIONS + 1):
            if attempt:
                if self.modern or last_id is None:
                    raise LinkFailure("the upstream closed the call's stream without an answer")
                await asyncio.sleep(min(retry_ms, MAX_RETRY_MS) / 1000)
                response = await self._resume(last_id)
            try:
                async for event in wire.read_events(response.content.iter_any()):
                    last_id = event.id if event.id is not None else last_id
                    retry_ms = event.retry if event.retry is not None else retry_ms
                    message = wire.decoded(event)
                    if message is None:
                        continue
                    if "method" in message and "id" in message:
                        await self._answer_request(message, on_request)
                        continue
                    yield message
                    if "method" not in message and message.get("id") == request_id:
                        return
            finally:
                response.release()
        raise LinkFailure("the upstream kept closing the call's stream")

    async def _resume(self, last_event_id: str) -> aiohttp.ClientResponse:
        """The rest of a closed event stream (handshake era: ``GET`` with ``Last-Event-ID``)."""
        session_id = await self._session()
        headers = {
            **self._headers,
            "accept": wire.SSE_CONTENT_TYPE,
            MCP_SESSION_ID_HEADER: session_id,
            "last-event-id": last_event_id,
        }
        headers.pop("content-type", None)
        try:
            response = await self.http.get(self.url, headers=headers)
        except (aiohttp.ClientError, OSError) as exc:
            raise _unreachable(exc) from exc
        if response.status != 200 or response.content_type != wire.SSE_CONTENT_TYPE:
            response.release()
            raise LinkFailure(_http_problem(response.status))
        return response

    async def _answer_request(
        self, request: Message, on_request: UpstreamRequestHandler | None
    ) -> None:
        """Answer a request the upstream made mid-call, on the link's session."""
        if request.get("method") == "ping":
            answer: Message = {"result": {}}
        elif on_request is None:
            answer = {"error": {"code": -32600, "message": "The client cannot be asked this"}}
        else:
            answer = await on_request(request)
        await self.notify({"jsonrpc": "2.0", "id": request["id"], **answer})

    async def notify(self, message: Message) -> None:
        """Post a notification or a response to the upstream (handshake era: on the link's
        session); a failure is logged, not raised (it is advisory)."""
        if self.modern:
            return
        try:
            response = await self._post(wire.dumps(message), None, retry_gone=False)
            response.release()
        except LinkFailure as failure:
            logger.info("upstream at %s: %s", self.url, failure)

    async def cancel(self, request_id: Any, reason: str) -> None:
        """Tell a handshake-era upstream the client cancelled a request (a 2026-07-28
        upstream learns it from the closed answer)."""
        params = {"requestId": request_id, "reason": reason}
        await self.notify({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": params})

    async def set_log_level(self, level: str) -> None:
        """Ask a handshake-era upstream to log at ``level`` on the link's session."""
        message = {
            "jsonrpc": "2.0",
            "id": self.next_id(),
            "method": "logging/setLevel",
            "params": {"level": level},
        }
        self.log_level = level
        try:
            async with self.exchange(message) as answer:
                async for _ in answer:
                    pass
        except LinkFailure as failure:
            logger.info("upstream at %s refused a log level: %s", self.url, failure)

    async def _session(self) -> str:
        if self._session_id is not None:
            return self._session_id
        async with self._opening:
            if self._session_id is None:
                self._session_id = await self._initialize()
            return self._session_id

    def _forget(self, session_id: str) -> None:
        if self._session_id == session_id:
            self._session_id = None
            self.log_level = None

    async def _initialize(self) -> str:
        """Open the link's handshake-era session: ``initialize``, then ``initialized``."""
        request_id = self.next_id()
        params = {
            "protocolVersion": self.era,
            "capabilities": self.capabilities,
            "clientInfo": CLIENT_INFO,
        }
        body = {"jsonrpc": "2.0", "id": request_id, "method": "initialize", "params": params}
        try:
            response = await self.http.post(self.url, data=wire.dumps(body), headers=self._headers)
        except (aiohttp.ClientError, OSError) as exc:
            raise _unreachable(exc) from exc
        try:
            session_id = response.headers.get(MCP_SESSION_ID_HEADER)
            answer = [m async for m in self._answer(response, request_id, None)]
        finally:
            response.release()
        if not answer or "result" not in answer[-1] or session_id is None:
            raise LinkFailure("the upstream refused to open a session")
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        headers = {**self._headers, MCP_SESSION_ID_HEADER: session_id}
        try:
            done = await self.http.post(self.url, data=wire.dumps(initialized), headers=headers)
            done.release()
        except (aiohttp.ClientError, OSError) as exc:
            raise _unreachable(exc) from exc
        return session_id

    async def close(self) -> None:
        """End the link's handshake-era session (best effort)."""
        session_id, self._session_id = self._session_id, None
        if session_id is None:
            return
        try:
            headers = {**self._headers, MCP_SESSION_ID_HEADER: session_id}
            response = await self.http.delete(self.url, headers=headers)
            response.release()
        except (aiohttp.ClientError, OSError):
            pass


async def _json_answer(response: aiohttp.ClientResponse, request_id: Any) -> Message:
    """The JSON-RPC response in a JSON answer, whatever its HTTP status (a 2026-07-28
    upstream answers some errors with 400); a body that is not one is a failure."""
    try:
        message = json.loads(await response.read())
    except (ValueError, aiohttp.ClientError) as exc:
        raise LinkFailure(_http_problem(response.status)) from exc
    if (
        not isinstance(message, dict)
        or message.get("jsonrpc") != "2.0"
        or message.get("id") not in (request_id, None)
        or not ("result" in message or "error" in message)
    ):
        raise LinkFailure(_http_problem(response.status))
    return message


def _http_problem(status: int) -> str:
    return "the upstream failed" if status < 400 else f"the upstream answered HTTP {status}"
