"""The live feed: every process's new events (through the cache's pub/sub) and, each second,
an aggregate of that second."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect

from tollgate.analytics.recorder import LIVE_CHANNEL
from tollgate.core.errors import TollgateError
from tollgate.core.runtime import Runtime
from tollgate.core.state import app_state
from tollgate.identity.jwt import decode_access_token
from tollgate.identity.models import User
from tollgate.identity.permissions import permissions_for
from tollgate.identity.service import user_for_claims

AGGREGATE_SECONDS = 1.0
"""How often an aggregate of the events just seen is pushed."""

POLICY_VIOLATION = 1008


async def _admin(websocket: WebSocket, runtime: Runtime) -> User | None:
    header = websocket.headers.get("authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else ""
    token = token or websocket.query_params.get("token", "")
    if not token:
        return None
    settings = runtime.settings
    try:
        claims = decode_access_token(
            token,
            secret=settings.jwt_secret_key,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
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
        self.latency = 0.0
        self.timed = 0

    def add(self, message: dict[str, Any]) -> None:
        if message.get("type") == "error":
            self.errors += 1
            return
        self.events += 1
        if message.get("success") is False:
            self.errors += 1
        if isinstance(message.get("response_time_ms"), int | float):
            self.latency += float(message["response_time_ms"])
            self.timed += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "type": "aggregate",
            "window_seconds": AGGREGATE_SECONDS,
            "events": self.events,
            "errors": self.errors,
            "avg_latency_ms": round(self.latency / self.timed, 3) if self.timed else None,
        }


async def serve_live(websocket: WebSocket) -> None:
    """Stream the live feed to one admin until they disconnect."""
    runtime = app_state(websocket.app).runtime
    await websocket.accept()
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
