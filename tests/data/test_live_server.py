"""``/mcp/ws`` on a real ``tollgate serve`` process with its own logging: the seed's Python
example (header) and the query-parameter form work, and the log has the seed's lines but
never a token, even one sent in the query string."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import websockets
from websockets.exceptions import ConnectionClosed

from tests.data.conftest import MCP_TOKEN, REPLY_SECONDS, helpdesk_path
from tests.live import server_env, serving
from tollgate.core.settings import Settings
from tollgate.data.demo import create_helpdesk

WRONG_TOKEN = "wrong-but-secret-looking-token-0123456789"


async def seed_example(uri: str, token: str) -> tuple[dict[str, object], dict[str, object]]:
    """The seed's Python example, with ``additional_headers`` (websockets' current name
    for ``extra_headers``)."""
    headers = {"X-MCP-Token": token}
    async with websockets.connect(uri, additional_headers=headers) as websocket:
        request = {"id": "req-1", "action": "list", "model": "users", "params": {"limit": 10}}
        await websocket.send(json.dumps(request))
        users = json.loads(await asyncio.wait_for(websocket.recv(), REPLY_SECONDS))
        request = {"id": "req-2", "action": "get", "model": "tickets", "params": {"id": 123}}
        await websocket.send(json.dumps(request))
        ticket = json.loads(await asyncio.wait_for(websocket.recv(), REPLY_SECONDS))
    return users, ticket


async def test_seed_example_works_against_tollgate_serve_and_logs_no_token(
    settings: Settings, tmp_path: Path
) -> None:
    create_helpdesk(helpdesk_path(settings))
    env = server_env(
        settings, MCP_ENABLED="true", MCP_TOKEN=MCP_TOKEN, LOG_LEVEL="INFO", MCP_RATE_LIMIT="60"
    )
    log_path = tmp_path / "server.log"
    async with serving(env, log_path) as base:
        uri = base.replace("http://", "ws://") + "/mcp/ws"
        users, ticket = await seed_example(uri, MCP_TOKEN)
        async with websockets.connect(f"{uri}?token={MCP_TOKEN}") as websocket:
            await websocket.send(json.dumps({"id": 1, "action": "query", "model": "change_log"}))
            changes = json.loads(await asyncio.wait_for(websocket.recv(), REPLY_SECONDS))
        async with websockets.connect(f"{uri}?token={WRONG_TOKEN}") as websocket:
            refused = json.loads(await asyncio.wait_for(websocket.recv(), REPLY_SECONDS))
            try:
                await asyncio.wait_for(websocket.recv(), REPLY_SECONDS)
                raise AssertionError("the refused connection stayed open")
            except ConnectionClosed:
                pass

    assert (users["id"], users["status"], users["count"]) == ("req-1", "ok", 10)
    assert (ticket["id"], ticket["status"]) == ("req-2", "ok")
    assert ticket["data"]["id"] == 123  # type: ignore[index]
    assert (changes["status"], changes["count"]) == ("ok", 50)
    assert refused == {"status": "error", "error": "Invalid authentication token"}
    log = log_path.read_text()
    assert "MCP WebSocket connection established" in log
    assert "MCP connection rejected: Invalid authentication token" in log
    assert "/mcp/ws" in log
    assert MCP_TOKEN not in log
    assert WRONG_TOKEN not in log
