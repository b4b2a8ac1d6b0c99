"""A cap on request bodies, enforced as they arrive (a pure ASGI middleware: nothing buffered).

A request whose ``Content-Length`` is over the limit is answered 413 before any of its body is
read. A body of unknown length (chunked) is counted as it is received, and answered 413 as soon
as the count passes the limit; the rest is never read. Routes behind the middleware that read
bodies before they authenticate (FastAPI resolves dependencies after parsing the body) are
therefore bounded by the limit, whoever sends them.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tollgate.core.errors import error_response

BODY_TOO_LARGE = "body_too_large"
"""The stable error code of a refused body."""


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a body passes the limit, to stop the app reading it.

    An HTTP exception, so that route code that wraps body parsing passes it on unchanged; the
    client has been answered already, whatever the app does with it.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, detail=_message(limit))


def _message(limit: int) -> str:
    return f"The request body is larger than {limit} bytes"


def declared_length(scope: Scope) -> int | None:
    """The request's ``Content-Length`` (the largest, if repeated), or None when absent or
    not a number (the server refuses such requests itself)."""
    lengths = [
        value for name, value in scope.get("headers", []) if name.lower() == b"content-length"
    ]
    try:
        return max(int(value) for value in lengths) if lengths else None
    except ValueError:
        return None


class BodySizeLimit:
    """Refuses HTTP request bodies over ``max_bytes`` with 413 ``body_too_large``; other
    scopes (WebSocket, lifespan) pass through."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self.refuse(scope, receive, send)
            return
        await _CountedRequest(self, scope, receive, send).run()

    async def refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 413 ``body_too_large`` and close the connection (the rest stays unread)."""
        response = error_response(
            413, BODY_TOO_LARGE, _message(self.max_bytes), {"Connection": "close"}
        )
        await response(scope, receive, send)


class _CountedRequest:
    """One request whose body is counted as the app receives it."""

    def __init__(self, limit: BodySizeLimit, scope: Scope, receive: Receive, send: Send) -> None:
        self.limit = limit
        self.scope = scope
        self._receive = receive
        self._send = send
        self.received = 0
        self.started = False
        self.refused = False

    async def run(self) -> None:
        """Run the app; once the body is refused, whatever the app sends or raises is moot."""
        try:
            await self.limit.app(self.scope, self.receive, self.send)
        except BodyTooLarge:
            if not self.refused:
                raise

    async def receive(self) -> Message:
        """The next message, counted; past the limit, answer 413 and stop the app."""
        message = await self._receive()
        if message["type"] != "http.request":
            return message
        self.received += len(message.get("body", b""))
        if self.received <= self.limit.max_bytes:
            return message
        if not self.started and not self.refused:
            self.refused = True
            await self.limit.refuse(self.scope, self._receive, self._send)
        raise BodyTooLarge(self.limit.max_bytes)

    async def send(self, message: Message) -> None:
        """Pass the app's response on, unless the 413 has been sent in its place."""
        if self.refused:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)
