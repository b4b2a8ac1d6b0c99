"""Handshake-era MCP sessions work whichever process a request of theirs lands on."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import require_postgres, require_redis
from tests.gateway.conftest import Gateway, Upstream, quick_member
from tests.live import server_env, serving
from tollgate.core.database import transaction
from tollgate.core.runtime import Runtime
from tollgate.core.settings import Settings
from tollgate.gateway import admin as upstream_admin
from tollgate.gateway import service as upstream_service
from tollgate.gateway.schemas import UpstreamCreate

SESSIONS_PER_ERA = 20
"""The issue's load: twenty clients of each era at once."""

LEGACY_VERSION = "2025-11-25"


async def _register_upstream(runtime: Runtime, url: str) -> None:
    async with transaction(runtime.sessions) as session:
        await upstream_service.create(
            session,
            runtime.keyring,
            UpstreamCreate(name="up", transport="streamable_http", url=url, price=0),
        )
    ok, error = await upstream_admin.probe(runtime, "up")
    assert ok, error


def _rpc_result(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC result of a POST answered as JSON or as an SSE stream."""
    assert response.status_code == 200, response.text
    if response.headers["content-type"].startswith("application/json"):
        body = response.json()
    else:
        data = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
        body = json.loads(data[-1])
    assert "result" in body, body
    result: dict[str, Any] = body["result"]
    return result


async def test_legacy_session_opened_on_one_process_is_served_by_another(
    settings: Settings, tmp_path: Path, upstream: Upstream
) -> None:
    require_redis()
    runtime = Runtime.build(settings)
    env = server_env(settings)
    try:
        await _register_upstream(runtime, upstream.url)
        async with (
            serving(env, tmp_path / "a.log") as server_a,
            serving(env, tmp_path / "b.log") as server_b,
        ):
            member = await quick_member(Gateway(server_a, runtime, None))
            headers = {
                "Authorization": f"Bearer {member.key}",
                "Accept": "application/json, text/event-stream",
            }
            async with httpx.AsyncClient(timeout=30, headers=headers) as http:
                opened = await http.post(
                    f"{server_a}/mcp",
                    json={
                        "jsonrpc": "2.0",
                        "id": 1,
                        "method": "initialize",
                        "params": {
                            "protocolVersion": LEGACY_VERSION,
                            "capabilities": {},
                            "clientInfo": {"name": "test", "version": "1"},
                        },
                    },
                )
                _rpc_result(opened)
                session = {
                    "Mcp-Session-Id": opened.headers["mcp-session-id"],
                    "MCP-Protocol-Version": LEGACY_VERSION,
                }
                initialized = await http.post(
                    f"{server_b}/mcp",
                    json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                    headers=session,
                )
                assert initialized.status_code == 202, initialized.text
                listed = await http.post(
                    f"{server_b}/mcp",
                    json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                    headers=session,
                )
                assert "up__echo" in {tool["name"] for tool in _rpc_result(listed)["tools"]}
                called = await http.post(
                    f"{server_b}/mcp",
                    json={
                        "jsonrpc": "2.0",
                        "id": 3,
                        "method": "tools/call",
                        "params": {"name": "up__echo", "arguments": {"text": "via B"}},
                    },
                    headers=session,
                )
                assert _rpc_result(called)["content"][0]["text"] == "via B"
                async with http.stream("GET", f"{server_b}/mcp", headers=session) as stream:
                    assert stream.status_code == 200
                    assert stream.headers["content-type"].startswith("text/event-stream")

                ended = await http.delete(f"{server_b}/mcp", headers=session)
                assert ended.status_code == 200, ended.text
                gone = await http.post(
                    f"{server_a}/mcp",
                    json={"jsonrpc": "2.0", "id": 4, "method": "tools/list"},
                    headers=session,
                )
                assert gone.status_code == 404
                forged = await http.post(
                    f"{server_b}/mcp",
                    json={"jsonrpc": "2.0", "id": 5, "method": "tools/list"},
                    headers={**session, "x-tollgate-forwarded": "guess"},
                )
                assert forged.status_code == 404
    finally:
        await runtime.close()


async def _one_session(url: str, key: str, mode: str) -> str:
    """Open a session in ``mode``, list the tools and call one, each on a fresh connection."""
    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {key}"},
        timeout=httpx2.Timeout(30, read=60),
        limits=httpx2.Limits(max_keepalive_connections=0),
    )
    try:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
            tools = await client.list_tools()
            assert "up__add" in {tool.name for tool in tools.tools}
            result = await client.call_tool("up__add", {"a": 2, "b": 3})
            assert not result.is_error, result
            return str(result.content[0].text)  # type: ignore[union-attr]
    finally:
        await http.aclose()


async def test_sessions_of_both_eras_work_behind_two_workers_on_one_port(
    settings: Settings, tmp_path: Path, upstream: Upstream
) -> None:
    require_redis()
    require_postgres()
    runtime = Runtime.build(settings)
    try:
        await _register_upstream(runtime, upstream.url)
        async with serving(server_env(settings), tmp_path / "w.log", workers=2) as server:
            member = await quick_member(Gateway(server, runtime, None))
            modes = ["legacy"] * SESSIONS_PER_ERA + ["2026-07-28"] * SESSIONS_PER_ERA
            results = await asyncio.gather(
                *(_one_session(f"{server}/mcp", member.key, mode) for mode in modes),
                return_exceptions=True,
            )
        failures = [r for r in results if not isinstance(r, str)]
        assert not failures, f"{len(failures)} of {len(modes)} sessions failed: {failures[:3]}"
        assert results == ["5"] * len(modes)
    finally:
        await runtime.close()
