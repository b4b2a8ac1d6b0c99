"""The forward path: a caller's ``tools/call`` relayed to its upstream as raw JSON-RPC.

The SDK's server and client each validate and rebuild every message; for a tool call that
Tollgate only routes, meters and passes on, that was most of the time it added to a call.
Here the request is read once (:mod:`tollgate.gateway.callers` decides whether it
qualifies), metered exactly as before (rate limit, credits reserved from the process's
hold, the record and charge committed before the answer leaves), rewritten (the tool's own
name, the era's envelope) and posted to the upstream over a pooled connection
(:mod:`tollgate.gateway.links`); what the upstream sends back during the call (progress,
log lines at the caller's level) is passed on as it comes, and its answer is returned with
Tollgate's server info and ``_meta["tollgate/overhead_ms"]``.

Everything else (other methods, stdio and built-in upstreams, a handshake-era caller that an
upstream may ask questions mid-call, anything unusual) takes the SDK's path
(:mod:`tollgate.gateway.server`), which behaves the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import anyio
import mcp_types as types
from mcp import MCPError
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    MCP_METHOD_HEADER,
    MCP_NAME_HEADER,
    encode_header_value,
)
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    LOG_LEVEL_META_KEY,
    PROTOCOL_VERSION_META_KEY,
    SERVER_INFO_META_KEY,
)
from starlette.types import Receive, Scope, Send

from tollgate.gateway import wire
from tollgate.gateway.callers import (
    CallerReader,
    CallerWire,
    header_map,
    is_tool_call,
)
from tollgate.gateway.catalogue import ToolEntry
from tollgate.gateway.connections import UpstreamConnection
from tollgate.gateway.hub import (
    OVERHEAD_META_KEY,
    Gateway,
    MissingCredential,
    ToolCall,
    tool_error,
)
from tollgate.gateway.links import LinkFailure, UpstreamLink, http_client
from tollgate.gateway.passthrough import SERVER_INFO, opened_state
from tollgate.gateway.relay import CallerSide, more_verbose, severe_enough
from tollgate.gateway.views import View
from tollgate.gateway.wire import Message
from tollgate.identity.credentials import AccountKeyCaller

logger = logging.getLogger(__name__)

MODERN_ENVELOPE = (
    PROTOCOL_VERSION_META_KEY,
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    LOG_LEVEL_META_KEY,
)
"""The 2026-07-28 request envelope in ``_meta``: not for a handshake-era upstream."""

CLOSE_SECONDS = 5.0
"""At shutdown, the links' handshake-era sessions are ended within this long (best effort)."""

KEEPALIVE_SECONDS = 15.0
"""A call's answer gets a ping after this long without anything to send (the SDK's own
interval)."""

INPUT_METHODS = {
    "sampling/createMessage": "sampling",
    "elicitation/create": "elicitation",
    "roots/list": "roots",
}
"""What an upstream may ask a client for, by method, as capability names."""


def wants_body(scope: Scope) -> bool:
    """Whether a request may be one the forward path serves (so its body is worth reading
    first): a POST of a 2026-07-28 ``tools/call``, or any POST on a handshake-era session
    (a tool call, or the cancellation of one)."""
    if scope.get("method") != "POST":
        return False
    for name, value in scope.get("headers", ()):
        if name == b"mcp-session-id" or (name == b"mcp-method" and value == b"tools/call"):
            return True
    return False


@dataclass
class _Running:
    """A forwarded call in progress, which its caller may cancel (hang up, or, on the
    handshake era, ``notifications/cancelled``)."""

    task: asyncio.Task[Any]
    armed: bool = True
    reason: str | None = None
    """Why the caller cancelled it; None while it was not."""

    def cancel(self, reason: str) -> None:
        """Stop the call, if it is still waiting for its upstream."""
        if self.armed:
            self.armed = False
            self.reason = reason
            self.task.cancel()


@dataclass
class _Reply:
    """How a forwarded call ends for its caller."""

    message: Message
    status: int = 200
    error_code: str | None = None
    settle: bool = True
    """False for an upstream's questions: that round is neither charged nor recorded."""
    upstream_seconds: float = 0.0


@dataclass
class _Exchange:
    caller: CallerWire
    call: ToolCall
    stream: wire.EventStream
    send: Send
    running: _Running | None = None
    upstream_id: int | None = None


class ForwardPath:
    """Serves the ``tools/call`` requests that qualify, for one process."""

    def __init__(self, gateway: Gateway, callers: CallerReader, *, enabled: bool = True) -> None:
        self.gateway = gateway
        self.callers = callers
        self.enabled = enabled
        self._http: aiohttp.ClientSession | None = None
        self._links: weakref.WeakKeyDictionary[UpstreamConnection, UpstreamLink] = (
            weakref.WeakKeyDictionary()
        )
        self._running: dict[tuple[str, Any], _Running] = {}
        """Handshake-era calls in progress, by (session id, the caller's request id)."""

    async def start(self) -> None:
        """Open the connection pool to upstreams (inside the event loop)."""
        if self.enabled:
            self._http = http_client()

    async def close(self) -> None:
        """End the links' sessions and close the pool."""
        links, self._links = list(self._links.values()), weakref.WeakKeyDictionary()
        with anyio.move_on_after(CLOSE_SECONDS):
            await asyncio.gather(*(link.close() for link in links), return_exceptions=True)
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def serve(
        self,
        caller: AccountKeyCaller,
        view: View,
        scope: Scope,
        body: bytes,
        receive: Receive,
        send: Send,
    ) -> bool:
        """Serve the request if it qualifies; False (nothing sent) to leave it to the SDK."""
        started = time.perf_counter()
        if self._http is None:
            return False
        headers = header_map(scope)
        message = wire.json_object(body)
        if message is None:
            return False
        if not is_tool_call(message):
            return await self._cancellation(message, headers, send)
        who = await self.callers.read(scope, headers, message)
        if who is None or who.can_be_asked:
            return False
        name = view.tool_name(who.params["name"])
        entry = self.gateway.catalogue.tool(name) if name else None
        if name is None or entry is None or not self._forwardable(entry):
            return False
        try:
            side = CallerSide(request_state=_text(who.params.get("requestState")))
            upstream_state = opened_state(self.gateway.runtime.keyring, caller, name, side)
        except MCPError:
            return False  # the SDK's path refuses it, with the same error
        side = CallerSide(protocol_version=who.protocol_version, session_id=who.session_id)
        arguments = who.params.get("arguments") or {}
        call = ToolCall(caller, entry, name, arguments, "", started, side, upstream_state)
        exchange = _Exchange(who, call, wire.EventStream(send), send)
        with self.callers.in_flight(who):
            await self._metered(exchange, receive)
        return True

    def _forwardable(self, entry: ToolEntry) -> bool:
        """Whether calls to this tool's upstream go over HTTP, to a session that is up."""
        record = self.gateway.upstreams.get(entry.upstream)
        shared = record.connection if record is not None else None
        return (
            record is not None
            and record.spec is not None
            and record.spec.transport == "streamable_http"
            and shared is not None
            and shared.era is not None
        )

    async def _metered(self, exchange: _Exchange, receive: Receive) -> None:
        gateway, call = self.gateway, exchange.call
        limited = gateway.rate_limited(call.caller)
        if limited is not None:
            await self._reply_result(exchange, limited)
            return
        try:
            connection = await gateway.connection_for(call.entry, call.caller)
        except MissingCredential as missing:
            refusal = tool_error(
                f"No {missing.service} credential: add one in Tollgate to use {call.name}",
                code="missing_credential",
                service=missing.service,
            )
            await self._reply_result(exchange, refusal)
            return
        call = exchange.call = replace(call, request_id=uuid.uuid4().hex)
        unpaid = await gateway.reserve(call.caller, call.entry, call.name, call.request_id)
        if unpaid is not None:
            await self._reply_result(exchange, unpaid)
            return
        await self._forward(exchange, connection, receive)

    async def _forward(
        self, exchange: _Exchange, connection: UpstreamConnection, receive: Receive
    ) -> None:
        upstream_started = time.perf_counter()
        running = exchange.running = _Running(asyncio.current_task())  # type: ignore[arg-type]
        key = self._track(exchange)
        watcher = asyncio.create_task(_watch(receive, running, exchange.stream))
        link: UpstreamLink | None = None
        try:
            link = await self._link(connection)
            reply = await self._exchange(exchange, connection, link)
        except asyncio.CancelledError:
            if running.reason is None:
                await self._settle_cancelled(exchange, link, upstream_started, "shutdown")
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            await self._settle_cancelled(exchange, link, upstream_started, running.reason)
            await exchange.stream.end()
            return
        finally:
            running.armed = False
            watcher.cancel()
            if key is not None:
                self._running.pop(key, None)
        reply.upstream_seconds = time.perf_counter() - upstream_started
        await self._finish(exchange, reply, upstream_started)

    def _track(self, exchange: _Exchange) -> tuple[str, Any] | None:
        who = exchange.caller
        if who.session_id is None or exchange.running is None:
            return None
        key = (who.session_id, who.request_id)
        self._running[key] = exchange.running
        return key

    async def _exchange(
        self, exchange: _Exchange, connection: UpstreamConnection, link: UpstreamLink | None
    ) -> _Reply:
        """The upstream's answer to the call as the caller's reply, or the refunded failure."""
        call = exchange.call
        upstream = call.entry.upstream
        timeout = connection.spec.timeout
        if link is None:
            unavailable = f"Upstream {upstream} failed: upstream {upstream} is unavailable"
            return _failure(exchange, unavailable)
        try:
            async with asyncio.timeout(timeout):
                await self._match_log_level(exchange.caller, connection, link)
                response = await self._relay(exchange, link)
        except TimeoutError:
            await self._cancel_upstream(exchange, link, "timeout")
            return _failure(
                exchange,
                f"Upstream {upstream} failed: no answer within {timeout:g} s",
                "upstream_timeout",
            )
        except LinkFailure as failure:
            logger.info("call to %s failed: %s", call.name, failure)
            if failure.unreachable:
                connection.mark_broken()  # its session reconnects, or shows the upstream down
            return _failure(exchange, f"Upstream {upstream} failed: {failure}")
        return self._reply_for(exchange, response)

    async def _relay(self, exchange: _Exchange, link: UpstreamLink) -> Message:
        """Post the call; pass on what the upstream sends during it; its response."""
        message, headers = self._upstream_request(exchange, link)
        exchange.upstream_id = message["id"]
        asker = _refuser(exchange.caller)
        async with link.exchange(message, headers, asker) as answer:
            async for item in answer:
                if "method" not in item:
                    return item
                frame = _relayed(item, exchange.caller)
                if frame is not None:
                    await exchange.stream.write(frame)
        raise LinkFailure("the upstream ended the call without an answer")

    def _upstream_request(
        self, exchange: _Exchange, link: UpstreamLink
    ) -> tuple[Message, dict[str, str] | None]:
        """The call as the upstream takes it: its own tool name, its era's envelope."""
        who, call = exchange.caller, exchange.call
        params = dict(who.params)
        params["name"] = call.entry.original
        meta = dict(params.get("_meta") or {})
        headers: dict[str, str] | None = None
        if link.modern:
            meta[PROTOCOL_VERSION_META_KEY] = link.era
            if not who.modern:
                meta[CLIENT_CAPABILITIES_META_KEY] = who.capabilities
                if who.client_info is not None:
                    meta[CLIENT_INFO_META_KEY] = who.client_info
                if who.log_level is not None:
                    meta[LOG_LEVEL_META_KEY] = who.log_level
            params.pop("requestState", None)
            if call.upstream_state is not None:
                params["requestState"] = call.upstream_state
            name = encode_header_value(params["name"])
            headers = {MCP_METHOD_HEADER: "tools/call", MCP_NAME_HEADER: name}
        else:
            for key in MODERN_ENVELOPE:
                meta.pop(key, None)
            params.pop("requestState", None)
            params.pop("inputResponses", None)
        params.pop("_meta", None)
        if meta:
            params["_meta"] = meta
        return {"jsonrpc": "2.0", "id": link.next_id(), "method": "tools/call", "params": params}, (
            headers
        )

    def _reply_for(self, exchange: _Exchange, response: Message) -> _Reply:
        """The caller's reply to the upstream's response."""
        who = exchange.caller
        error = response.get("error")
        if isinstance(error, dict):
            status = ERROR_CODE_HTTP_STATUS.get(error.get("code", 0), 200) if who.modern else 200
            message = {"jsonrpc": "2.0", "id": who.request_id, "error": error}
            return _Reply(message, status, "upstream_error")
        result = response.get("result")
        if not isinstance(result, dict):
            upstream = exchange.call.entry.upstream
            return _failure(exchange, f"Upstream {upstream} failed: the upstream failed")
        if result.get("resultType") == "input_required":
            return self._questions(exchange, result)
        error_code = "tool_error" if result.get("isError") is True else None
        return _Reply(wire.jsonrpc_result(who.request_id, result), error_code=error_code)

    def _questions(self, exchange: _Exchange, result: Message) -> _Reply:
        """An upstream's questions: passed on to a 2026-07-28 caller with Tollgate's sealed
        state (that round costs nothing); refused for a caller that cannot be asked."""
        who, call = exchange.caller, exchange.call
        if not who.modern:
            needed = _input_refusal(result, who.capabilities)
            return _failure(exchange, f"Upstream {call.entry.upstream} failed: {needed}")
        state = _text(result.get("requestState"))
        sealed = {**result, "requestState": self.gateway.seal_state(call, state)}
        return _Reply(wire.jsonrpc_result(who.request_id, sealed), settle=False)

    async def _finish(self, exchange: _Exchange, reply: _Reply, upstream_started: float) -> None:
        """Settle the call (durable before the answer leaves), then answer."""
        call = exchange.call
        if not reply.settle:
            self.gateway.meter.release(call.request_id)
        else:
            with anyio.CancelScope(shield=True):
                await self.gateway.settle(call, upstream_started, reply.error_code)
        result = reply.message.get("result")
        if isinstance(result, dict):
            overhead = time.perf_counter() - call.started - reply.upstream_seconds
            meta = dict(result.get("_meta") or {})
            meta[SERVER_INFO_META_KEY] = SERVER_INFO
            meta[OVERHEAD_META_KEY] = round(overhead * 1000, 3)
            result["_meta"] = meta
            _shape_for(exchange.caller, result)
        await _reply(exchange, reply.message, reply.status)

    async def _reply_result(self, exchange: _Exchange, result: types.CallToolResult) -> None:
        """Answer with a result Tollgate made (a refusal before the upstream was called)."""
        body = result.model_dump(by_alias=True, exclude_none=True, mode="json")
        _shape_for(exchange.caller, body)
        await _reply(exchange, wire.jsonrpc_result(exchange.caller.request_id, body))

    async def _settle_cancelled(
        self, exchange: _Exchange, link: UpstreamLink | None, started: float, reason: str
    ) -> None:
        with anyio.CancelScope(shield=True):
            await self.gateway.settle(exchange.call, started, "cancelled", cancelled=True)
            if link is not None:
                await self._cancel_upstream(exchange, link, reason)

    async def _cancel_upstream(self, exchange: _Exchange, link: UpstreamLink, why: str) -> None:
        if exchange.upstream_id is not None:
            with anyio.move_on_after(2, shield=True):
                await link.cancel(exchange.upstream_id, why)

    async def _match_log_level(
        self, who: CallerWire, connection: UpstreamConnection, link: UpstreamLink
    ) -> None:
        """Have a handshake-era upstream log down to the caller's level on the link's
        session (shared, so only ever lowered; each caller's own level filters the relay)."""
        client = connection.client
        if link.modern or who.log_level is None or client is None:
            return
        if client.server_capabilities.logging is None:
            return
        if more_verbose(who.log_level, link.log_level):  # type: ignore[arg-type]
            await link.set_log_level(who.log_level)

    async def _link(self, connection: UpstreamConnection) -> UpstreamLink | None:
        """The raw link for a pooled session (made when its era is known); None while the
        upstream is unavailable."""
        if not await connection.wait_ready() or connection.era is None or self._http is None:
            return None
        link = self._links.get(connection)
        spec = connection.spec
        if link is None or link.era != connection.era:
            assert spec.url is not None
            link = UpstreamLink(self._http, spec.url, dict(spec.headers), connection.era)
            self._links[connection] = link
        return link

    async def _cancellation(self, message: Message, headers: dict[str, str], send: Send) -> bool:
        """A handshake-era caller's ``notifications/cancelled`` for a forwarded call: stop it
        (202); any other message is the SDK's."""
        session_id = headers.get(MCP_SESSION_ID_HEADER)
        if session_id is None or not self._running:
            return False
        request_id = _cancelled_request(message)
        running = self._running.get((session_id, request_id)) if request_id is not None else None
        if running is None:
            return False
        running.cancel("cancelled by the client")
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return True


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _failure(exchange: _Exchange, text: str, code: str = "upstream_error") -> _Reply:
    """A refunded backend failure, as the tool result the caller gets."""
    result = tool_error(f"{text}; the credits were refunded", code=code, backend_error=True)
    body = result.model_dump(by_alias=True, exclude_none=True, mode="json")
    return _Reply(wire.jsonrpc_result(exchange.caller.request_id, body), error_code=code)


def _shape_for(who: CallerWire, result: Message) -> None:
    """A result as the caller's era has it (``resultType`` exists from 2026-07-28 on)."""
    if who.modern:
        result.setdefault("resultType", "complete")
    else:
        result.pop("resultType", None)


async def _reply(exchange: _Exchange, message: Message, status: int = 200) -> None:
    """The caller's answer: the last event of its stream if one started, else JSON."""
    if exchange.stream.started:
        await exchange.stream.end(wire.sse_frame(message))
    else:
        await wire.send_json(exchange.send, status, message)


def _relayed(notification: Message, who: CallerWire) -> bytes | None:
    """The frame passing an upstream's notification on to the caller, if it is one the
    caller asked for: progress (it sent a token), log lines (at its level)."""
    method = notification.get("method")
    if method == "notifications/progress":
        return wire.sse_frame(notification) if who.wants_progress else None
    if method == "notifications/message":
        params = notification.get("params")
        level = params.get("level") if isinstance(params, dict) else None
        if who.modern and who.log_level is None:
            return None
        if level is None or not severe_enough(level, who.log_level):  # type: ignore[arg-type]
            return None
        return wire.sse_frame(notification)
    return None


def _refuser(who: CallerWire) -> Any:
    """Answers an upstream's request mid-call for a caller that cannot be asked."""

    async def refuse(request: Message) -> Message:
        what = INPUT_METHODS.get(str(request.get("method")), str(request.get("method")))
        if who.modern:
            text = f"The calling client cannot be sent {what} requests during this call"
        else:
            text = f"The calling client does not support {what}"
        return {"error": {"code": types.INVALID_REQUEST, "message": text}}

    return refuse


def _input_refusal(result: Message, capabilities: Message) -> str:
    """Why a caller that cannot be asked mid-call cannot answer an upstream's questions."""
    requests = result.get("inputRequests")
    methods = [r.get("method") for r in requests.values()] if isinstance(requests, dict) else []
    for method in methods:
        what = INPUT_METHODS.get(str(method), str(method))
        if capabilities.get(what) is None:
            return f"The calling client does not support {what}"
    return "The calling client cannot be asked for input during this call"


def _cancelled_request(message: Message) -> Any:
    """The request id a ``notifications/cancelled`` message names, else None."""
    if message.get("method") != "notifications/cancelled":
        return None
    params = message.get("params")
    return params.get("requestId") if isinstance(params, dict) else None


async def _watch(receive: Receive, running: _Running, stream: wire.EventStream) -> None:
    """Cancel the call when its caller hangs up; while the upstream is silent, keep the
    answer alive with a ping every :data:`KEEPALIVE_SECONDS` (as an event stream: a proxy
    between the caller and Tollgate would otherwise time a long call out)."""
    while True:
        try:
            message = await asyncio.wait_for(receive(), KEEPALIVE_SECONDS)
        except TimeoutError:
            if running.armed:
                await stream.write(wire.SSE_PING)
            continue
        if message["type"] == "http.disconnect":
            running.cancel("the client disconnected")
            return
