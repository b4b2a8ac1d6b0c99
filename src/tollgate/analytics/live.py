"""The live feed: every process's new events (through the cache's pub/sub) and, each second,
an aggregate of that second.

A caller names its token in ``Authorization``, in ``?token=``, or (a browser, which can set
neither header and should not put a token where access logs keep it) as a ``bearer.<token>``
WebSocket subprotocol beside :data:`LIVE_PROTOCOL`. Besides an admin's JWT, the feed takes a
*ticket*: a JWT of a minute whose audience is the feed's own, which the rest of the API
refuses; the dashboard page asks for one with its session and opens the socket with it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import statistics
from typing import Any

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect

from tollgate.analytics.recorder import LIVE_CHANNEL
from tollgate.core.errors import TollgateError
from tollgate.core.runtime import Runtime
from tollgate.core.settings import Settings
from tollgate.core.state import app_state
from tollgate.identity.jwt import TokenClaims, decode_access_token
from tollgate.identity.models import User
from tollgate.identity.permissions import permissions_for
from tollgate.identity.service import issue_access_token, user_for_claims

AGGREGATE_SECONDS = 1.0
"""How often an aggregate of the events just seen is pushed."""

POLICY_VIOLATION = 1008

LIVE_PROTOCOL = "tollgate.live"
"""The subprotocol a browser offers (and the feed accepts) when it sends its token as a
second subprotocol, ``bearer.<token>``."""

BEARER_PROTOCOL = "bearer."
"""The prefix of the subprotocol that carries a token."""

TICKET_MINUTES = 1
"""How long a ticket opens the feed: it is fetched just before the socket opens, and an open
socket is not asked again, so a minute is plenty while a leaked one soon expires."""


def ticket_audience(settings: Settings) -> str:
    """The audience of tickets: the feed's own, so no other route takes them."""
    return f"{settings.jwt_audience}:analytics-live"


def live_ticket(settings: Settings, user: User) -> str:
    """A ticket that opens the live feed as ``user`` for :data:`TICKET_MINUTES`: the user's
    access token with the feed's audience and a short life (refused like any of the user's
    tokens once their token version changes)."""
    for_the_feed = {
        "jwt_audience": ticket_audience(settings),
        "access_token_expire_minutes": TICKET_MINUTES,
    }
    return issue_access_token(settings.model_copy(update=for_the_feed), user)


def _offered_token(websocket: WebSocket) -> str:
    header = websocket.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    for protocol in websocket.scope.get("subprotocols", []):
        if protocol.startswith(BEARER_PROTOCOL):
            return str(protocol[len(BEARER_PROTOCOL) :])
    return websocket.query_params.get("token", "")


def _claims(token: str, settings: Settings) -> TokenClaims:
    """The claims of an admin's JWT or of a ticket."""
    decode = functools.partial(
        decode_access_token, token, secret=settings.jwt_secret_key, issuer=settings.jwt_issuer
    )
    try:
        return decode(audience=settings.jwt_audience)
    except TollgateError:
        return decode(audience=ticket_audience(settings))


async def _admin(websocket: WebSocket, runtime: Runtime) -> User | None:
    token = _offered_token(websocket)
    if not token:
        return None
    try:
        claims = _claims(token, runtime.settings)
        async with runtime.sessions() as session:
            user = await user_for_claims(session, claims)
            await session.commit()
    except TollgateError:
        return None
    return user if "analytics.read" in permissions_for(user.role, user.is_superuser) else None


class _Second:
    """What the feed forwarded during the current second."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start a new second."""
        self.events = 0
        self.errors = 0
        self.credits = 0
        self.latencies: list[float] = []

    def add(self, message: dict[str, Any]) -> None:
        if message.get("type") == "error":
            self.errors += 1
            return
        self.events += 1
        if message.get("success") is False:
            self.errors += 1
        if isinstance(message.get("credits"), int):
            self.credits += message["credits"]
        if isinstance(message.get("response_time_ms"), int | float):
            self.latencies.append(float(message["response_time_ms"]))

    def snapshot(self) -> dict[str, Any]:
        """The second's aggregate (latencies in ms, ``None`` in a second without any)."""
        timed = self.latencies
        return {
            "type": "aggregate",
            "window_seconds": AGGREGATE_SECONDS,
            "events": self.events,
            "errors": self.errors,
            "avg_latency_ms": round(sum(timed) / len(timed), 3) if timed else None,
            "p50_latency_ms": round(statistics.median(timed), 3) if timed else None,
            "credits": self.credits,
        }


async def serve_live(websocket: WebSocket) -> None:
    """Stream the live feed to one admin until they disconnect."""
    runtime = app_state(websocket.app).runtime
    named = LIVE_PROTOCOL in websocket.scope.get("subprotocols", [])
    await websocket.accept(subprotocol=LIVE_PROTOCOL if named else None)
    if await _admin(websocket, runtime) is None:
        await websocket.send_text(json.dumps({"type": "error", "error": "Not authorized"}))
        await websocket.close(code=POLICY_VIOLATION)
        return
    second = _Second()
    async with runtime.cache.subscribe(LIVE_CHANNEL) as messages:
        await websocket.send_text(json.dumps({"type": "subscribed", "channel": "live"}))
        tasks = [
            asyncio.create_task(_forward(websocket, messages, second)),
            asyncio.create_task(_aggregate(websocket, second)),
            asyncio.create_task(_until_closed(websocket)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                    await task


async def _forward(websocket: WebSocket, messages: Any, second: _Second) -> None:
    async for raw in messages:
        second.add(json.loads(raw))
        await websocket.send_text(raw)


async def _aggregate(websocket: WebSocket, second: _Second) -> None:
    while True:
        await asyncio.sleep(AGGREGATE_SECONDS)
        snapshot = second.snapshot()
        second.reset()
        await websocket.send_text(json.dumps(snapshot))


async def _until_closed(websocket: WebSocket) -> None:
    while True:
        frame = await websocket.receive()
        if frame["type"] == "websocket.disconnect":
            return
