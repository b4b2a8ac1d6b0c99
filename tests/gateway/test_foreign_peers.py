"""Real peers from npm: the reference server federated behind the gateway, and the MCP
Inspector CLI as a client of the gateway (installed by ``make peers``)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_SERVICES
from tests.gateway.conftest import (
    ERAS,
    Gateway,
    Upstream,
    add_upstream,
    balance,
    mcp_client,
    new_member,
    text_of,
    wait_settled,
)
from tests.live import free_port, listening
from tests.waiting import eventually_sync
from tollgate.identity.models import Role

NPM_DIR = Path(__file__).resolve().parents[1] / "npm"
PRELOAD = NPM_DIR / "listen-localhost.cjs"
PEER_START_SECONDS = 30.0
"""Node starts in about a second here; this bounds a broken install."""

CLI_TIMEOUT_SECONDS = 120
"""The Inspector CLI starts Node and connects once; it never needs this long."""


def _peer(name: str) -> Path:
    path = NPM_DIR / "node_modules" / ".bin" / name
    if not path.exists() or shutil.which("node") is None:
        message = f"{name} is not installed: run `make peers`"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)
    return path


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    eventually_sync(lambda: listening(port, process), "the npm peer listens", PEER_START_SECONDS)


@pytest.fixture
def everything() -> Iterator[str]:
    """``@modelcontextprotocol/server-everything`` in streamableHttp mode on 127.0.0.1."""
    server = _peer("mcp-server-everything")
    port = free_port()
    process = subprocess.Popen(
        ["node", "--require", str(PRELOAD), str(server), "streamableHttp"],
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(port, process)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize("mode", ERAS)
async def test_reference_server_from_npm_is_federated_and_called(
    gateway: Gateway, everything: str, mode: str
) -> None:
    admin = await new_member(gateway, role=Role.ADMIN)
    added = await add_upstream(gateway, admin, name="everything", url=everything, price=3)
    assert added["state"] == "up"
    assert added["protocol_era"] != "2026-07-28", "the npm server speaks the handshake era"
    user = await new_member(gateway)
    before = await balance(gateway.runtime, user.account_id)

    async with mcp_client(gateway, user.key, mode) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        echoed = await client.call_tool("everything__echo", {"message": "through tollgate"})
        summed = await client.call_tool("everything__get-sum", {"a": 20, "b": 22})

    assert {"everything__echo", "everything__get-sum"} <= names
    assert text_of(echoed) == "Echo: through tollgate"
    assert "42" in text_of(summed)
    await wait_settled(gateway.runtime, user.account_id)
    assert await balance(gateway.runtime, user.account_id) == before - 6


def _inspector(url: str, key: str, *method: str) -> dict[str, object]:
    completed = subprocess.run(
        [
            str(_peer("mcp-inspector")),
            "--cli",
            url,
            "--transport",
            "http",
            "--header",
            f"Authorization: Bearer {key}",
            *method,
        ],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    result: dict[str, object] = json.loads(completed.stdout)
    return result


async def test_inspector_cli_lists_and_calls_tools_through_the_gateway(
    gateway: Gateway, upstream: Upstream
) -> None:
    _peer("mcp-inspector")
    admin = await new_member(gateway, role=Role.ADMIN)
    await add_upstream(gateway, admin, name="echo", url=upstream.url, price=1)
    user = await new_member(gateway)

    listed = await asyncio.to_thread(
        _inspector, gateway.mcp_url, user.key, "--method", "tools/list"
    )
    called = await asyncio.to_thread(
        _inspector,
        gateway.mcp_url,
        user.key,
        "--method",
        "tools/call",
        "--tool-name",
        "echo__add",
        "--tool-arg",
        "a=2",
        "b=3",
    )

    tools = listed["tools"]
    assert isinstance(tools, list)
    assert "echo__add" in {t["name"] for t in tools}
    assert called["isError"] is False
    assert called["content"] == [{"type": "text", "text": "5"}]
    assert not any(user.key in seen for seen in upstream.recorder.seen)
