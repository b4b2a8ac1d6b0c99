"""``/mcp/ws``: seed 002's WebSocket protocol for agents' read-only data access."""

from __future__ import annotations

import json
import logging
import time

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from tollgate.core.state import app_state
from tollgate.data.protocol import RATE_WINDOW_SECONDS, RateLimiter, error
from tollgate.data.service import DataAccess

logger = logging.getLogger(__name__)

router = APIRouter(tags=["data"])

POLICY_VIOLATION = 1008
"""WebSocket close code for a refused token, a disabled server or an exceeded rate limit."""


@router.websocket("/mcp/ws")
async def data_socket(websocket: WebSocket) -> None:
    """Read-only access to whitelisted models. Off unless ``MCP_ENABLED``; the token is
    ``MCP_TOKEN`` or an active account key, in ``X-MCP-Token`` or ``?token=``. Reads with an
    account key are charged like the data tools; reads with ``MCP_TOKEN`` are free."""
    access = app_state(websocket.app).find(DataAccess)
    await websocket.accept()
    if access is None:
        await _refuse(websocket, "MCP server is disabled")
        return
    token = websocket.headers.get("x-mcp-token") or websocket.query_params.get("token")
    agent = await access.authenticate(token)
    if agent is None:
        logger.warning("MCP connection rejected: Invalid authentication token")
        await _refuse(websocket, "Invalid authentication token")
        return
    logger.info("MCP WebSocket connection established")
    limit = access.settings.mcp_rate_limit
    limiter = RateLimiter(limit)
    try:
        while True:
            frame = await websocket.receive()
            if frame["type"] == "websocket.disconnect":
                break
            if not limiter.allow(time.monotonic()):
                logger.warning("MCP connection closed: Rate limit exceeded")
                await _refuse(
                    websocket, f"Rate limit exceeded: {limit} requests per {RATE_WINDOW_SECONDS}s"
                )
                return
            text = frame.get("text") if frame.get("text") is not None else frame.get("bytes", b"")
            reply = await access.answer(agent, text or "")
            await websocket.send_text(json.dumps(reply))
    except WebSocketDisconnect:
        pass
    finally:
        logger.info("MCP WebSocket connection closed")


async def _refuse(websocket: WebSocket, message: str) -> None:
    await websocket.send_text(json.dumps(error(message)))
    if websocket.client_state == WebSocketState.CONNECTED:
        await websocket.close(code=POLICY_VIOLATION)
