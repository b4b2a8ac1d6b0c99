"""JSON-RPC messages on the Streamable HTTP wire, as bytes: reading an upstream's event
stream, and writing what the forward path sends a caller (:mod:`tollgate.gateway.forward`).

The SDK builds and validates a pydantic model for every message it reads or writes; the
forward path relays messages it only needs to look at, so it reads them with :mod:`json`
and writes them back the same way.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.types import Send

JSON_CONTENT_TYPE = "application/json"
SSE_CONTENT_TYPE = "text/event-stream"

SSE_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-type", SSE_CONTENT_TYPE.encode()),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]
"""Response headers of an event stream (as the SDK's server sends them)."""

JSON_HEADERS: list[tuple[bytes, bytes]] = [(b"content-type", JSON_CONTENT_TYPE.encode())]

SSE_PING = b": ping\r\n\r\n"
"""A comment line: keeps a quiet stream open behind proxies with idle-read timeouts."""

Message = dict[str, Any]


@dataclass
class SseEvent:
    """One server-sent event (only the fields MCP uses)."""

    data: str = ""
    event: str = "message"
    id: str | None = None
    retry: int | None = None


def dumps(message: Message) -> bytes:
    """A message as compact JSON bytes."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def sse_frame(message: Message, event_id: str | None = None) -> bytes:
    """One ``event: message`` frame carrying ``message``."""
    head = f"id: {event_id}\r\n" if event_id is not None else ""
    return f"{head}event: message\r\ndata: ".encode() + dumps(message) + b"\r\n\r\n"


def json_object(body: bytes) -> Message | None:
    """A body decoded as one JSON object; None for anything else (or no JSON at all)."""
    try:
        decoded = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return decoded if isinstance(decoded, dict) else None


def jsonrpc_result(request_id: Any, result: Message) -> Message:
    """A JSON-RPC success response."""
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


async def lines_of(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The lines of a byte stream (without their ending), however it is chunked: a line
    may be longer than any read buffer (a large result in one ``data:`` line)."""
    buffer = bytearray()
    async for chunk in chunks:
        buffer.extend(chunk)
        start = 0
        while (end := buffer.find(b"\n", start)) != -1:
            yield bytes(buffer[start:end]).rstrip(b"\r")
            start = end + 1
        del buffer[:start]
    if buffer:
        yield bytes(buffer).rstrip(b"\r")


async def read_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[SseEvent]:
    """The events of an event stream, from its bytes.

    Fields follow the HTML living standard's rules: ``data`` lines join with newlines, a
    blank line dispatches, comments and unknown fields are skipped, a ``retry`` that is not
    a number is ignored.
    """
    event = SseEvent()
    data: list[str] = []
    async for raw in lines_of(chunks):
        line = raw.decode("utf-8")
        if not line:
            if data or event.id is not None:
                event.data = "\n".join(data)
                yield event
            event, data = SseEvent(id=event.id), []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event.event = value
        elif name == "id" and "\x00" not in value:
            event.id = value
        elif name == "retry" and value.isdigit():
            event.retry = int(value)
    if data:
        event.data = "\n".join(data)
        yield event


def decoded(event: SseEvent) -> Message | None:
    """The JSON-RPC message an event carries; None for a priming event, a non-message
    event or data that is not a JSON object."""
    if event.event != "message" or not event.data.strip():
        return None
    try:
        message = json.loads(event.data)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


async def send_json(send: Send, status: int, message: Message) -> None:
    """A whole JSON response."""
    body = dumps(message)
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class EventStream:
    """An event-stream response to a caller, started on its first frame."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False
        self.ended = False

    async def start(self) -> None:
        """Send the response's headers (once)."""
        if not self.started:
            self.started = True
            await self._send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})

    async def write(self, frame: bytes) -> None:
        """Send one frame (starting the response if needed)."""
        await self.start()
        await self._send({"type": "http.response.body", "body": frame, "more_body": True})

    async def end(self, frame: bytes = b"") -> None:
        """Send a last frame and end the response (once)."""
        if self.ended:
            return
        await self.start()
        self.ended = True
        await self._send({"type": "http.response.body", "body": frame, "more_body": False})
