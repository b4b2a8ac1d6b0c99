"""``mcp-remote`` (npm) against ``/mcp`` with no header: it discovers Tollgate's
authorization server, registers (or uses a client id metadata document), sends the user to
``/authorize`` (this test signs in and consents as the browser would), receives tokens, lists
and calls tools; the calls are charged to the user's account."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.conftest import REQUIRE_SERVICES
from tests.gateway.conftest import (
    Gateway,
    Upstream,
    balance,
    http_to,
    new_member,
    register_upstream,
    wait_settled,
)
from tests.gateway.upstream import serve_in_thread
from tests.identity.oauth.conftest import sign_in_and_consent
from tests.live import free_port
from tollgate.identity.models import Role

NPM_BIN = Path(__file__).resolve().parents[2] / "npm" / "node_modules" / ".bin"
FLOW_SECONDS = 90
"""mcp-remote starts Node, discovers, registers and connects in a few seconds here."""

AUTHORIZE_MARK = "Please authorize this client by visiting:"


def _mcp_remote() -> Path:
    path = NPM_BIN / "mcp-remote"
    if not path.exists() or shutil.which("node") is None:
        message = "mcp-remote is not installed: run `make peers` (tests/npm)"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)
    return path


class Remote:
    """An ``mcp-remote`` process spoken to over its stdio (newline-delimited JSON-RPC)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.next_id = 0
        self.stderr: list[str] = []

    async def authorize_url(self) -> str:
        """The URL mcp-remote asks the user to open."""
        assert self.process.stderr is not None
        marked = False
        while line := (await self.process.stderr.readline()).decode():
            self.stderr.append(line)
            text = line.strip()
            if marked and text.startswith("http"):
                return text
            if AUTHORIZE_MARK in text:
                marked = True
                rest = text.split(AUTHORIZE_MARK, 1)[1].strip()
                if rest.startswith("http"):
                    return rest
        raise AssertionError("mcp-remote ended without an authorize URL:\n" + "".join(self.stderr))

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send a request; its result (an error fails the test)."""
        self.next_id += 1
        await self._send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            message = json.loads(line)
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                result: dict[str, Any] = message["result"]
                return result
        raise AssertionError("mcp-remote closed its output:\n" + "".join(self.stderr))

    async def notify(self, method: str) -> None:
        """Send a notification."""
        await self._send({"jsonrpc": "2.0", "method": method})

    async def _send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")
        await self.process.stdin.drain()


async def _drain(stream: asyncio.StreamReader | None, into: list[str]) -> None:
    while stream is not None and (line := await stream.readline()):
        into.append(line.decode())


async def _run_flow(
    gateway: Gateway, email: str, config_dir: Path, *extra: str, callback_port: int
) -> dict[str, Any]:
    """mcp-remote through sign-in and consent, then initialize, list and call a tool."""
    env = {**os.environ, "MCP_REMOTE_CONFIG_DIR": str(config_dir), "BROWSER": "true"}
    process = await asyncio.create_subprocess_exec(
        str(_mcp_remote()),
        gateway.mcp_url,
        str(callback_port),
        "--transport",
        "http-only",
        *extra,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    remote = Remote(process)
    try:
        async with asyncio.timeout(FLOW_SECONDS):
            url = await remote.authorize_url()
            drain = asyncio.create_task(_drain(process.stderr, remote.stderr))
            async with http_to(gateway) as http:
                callback = await sign_in_and_consent(http, url, email)
            async with httpx.AsyncClient(timeout=30) as browser:
                landed = await browser.get(callback)
            assert landed.status_code == 200, landed.text
            await remote.request(
                "initialize",
                {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "tollgate-test", "version": "1"},
                },
            )
            await remote.notify("notifications/initialized")
            tools = await remote.request("tools/list", {})
            called = await remote.request(
                "tools/call", {"name": "echo__echo", "arguments": {"text": "via mcp-remote"}}
            )
            drain.cancel()
            return {"tools": tools, "called": called}
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


@pytest.fixture
def callback_port() -> int:
    """The port of mcp-remote's OAuth callback (part of its redirect URI)."""
    return free_port()


async def test_mcp_remote_without_a_header_signs_in_with_oauth_and_is_charged(
    oauth_gateway: Gateway, upstream: Upstream, tmp_path: Path, callback_port: int
) -> None:
    admin = await new_member(oauth_gateway, role=Role.ADMIN)
    member = await new_member(oauth_gateway)
    await register_upstream(oauth_gateway, admin, name="echo", url=upstream.url, price=2)
    before = await balance(oauth_gateway.runtime, member.account_id)
    outcome = await _run_flow(oauth_gateway, member.email, tmp_path, callback_port=callback_port)
    assert "echo__echo" in {t["name"] for t in outcome["tools"]["tools"]}
    assert outcome["called"]["content"][0]["text"] == "via mcp-remote"
    calls = await wait_settled(oauth_gateway.runtime, member.account_id)
    assert [c.tool_name for c in calls] == ["echo__echo"]
    assert await balance(oauth_gateway.runtime, member.account_id) == before - 2
    async with http_to(oauth_gateway) as http:
        grants = (await http.get("/api/v1/oauth/grants", headers=member.jwt_headers)).json()
    assert [g["resource"] for g in grants] == [oauth_gateway.mcp_url]


@pytest.fixture
def metadata_document(callback_port: int) -> Iterator[str]:
    """A Client ID Metadata Document served on 127.0.0.1: its URL is the client id."""
    holder: dict[str, str] = {}

    async def document(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "client_id": holder["url"],
                "client_name": "CIMD test client",
                "redirect_uris": [f"http://localhost:{callback_port}/oauth/callback"],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
            }
        )

    url, stop = serve_in_thread(Starlette(routes=[Route("/client.json", document)]), "")
    holder["url"] = f"{url}/client.json"
    try:
        yield holder["url"]
    finally:
        stop()


async def test_mcp_remote_with_a_client_id_metadata_document(
    oauth_gateway: Gateway,
    upstream: Upstream,
    tmp_path: Path,
    callback_port: int,
    metadata_document: str,
) -> None:
    admin = await new_member(oauth_gateway, role=Role.ADMIN)
    member = await new_member(oauth_gateway)
    await register_upstream(oauth_gateway, admin, name="echo", url=upstream.url, price=1)
    before = await balance(oauth_gateway.runtime, member.account_id)
    info = json.dumps({"client_id": metadata_document})
    outcome = await _run_flow(
        oauth_gateway,
        member.email,
        tmp_path,
        "--static-oauth-client-info",
        info,
        callback_port=callback_port,
    )
    assert outcome["called"]["content"][0]["text"] == "via mcp-remote"
    assert await balance(oauth_gateway.runtime, member.account_id) == before - 1
    async with http_to(oauth_gateway) as http:
        grants = (await http.get("/api/v1/oauth/grants", headers=member.jwt_headers)).json()
    assert [(g["client_id"], g["client_name"]) for g in grants] == [
        (metadata_document, "CIMD test client")
    ]
