"""A stdio upstream: Tollgate starts its process, serves its tools, starts it again after it
is killed, and stops it on shutdown."""

from __future__ import annotations

import os
import signal
import sys
import uuid
from pathlib import Path

from mcp import MCPError

from tests.gateway.conftest import (
    Gateway,
    balance,
    connect,
    eventually,
    quick_member,
    register_upstream,
    serving,
    text_of,
    wait_settled,
)
from tollgate.core.settings import Settings
from tollgate.identity.models import Role

UPSTREAM_SCRIPT = str(Path(__file__).with_name("upstream.py").resolve())

RESTART_SECONDS = 20.0
"""A killed stdio upstream is running again well within this (backoff starts at 0.5 s)."""


def upstream_pids(marker: str) -> list[int]:
    """Live processes running the test upstream over stdio under ``marker``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if UPSTREAM_SCRIPT.encode() in argv and b"stdio" in argv and marker.encode() in argv:
            pids.append(int(entry.name))
    return pids


async def add_stdio_upstream(gateway: Gateway, marker: str) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    added = await register_upstream(
        gateway,
        admin,
        name="local",
        transport="stdio",
        command=sys.executable,
        args=[UPSTREAM_SCRIPT, "stdio", "--name", marker],
        price=1,
    )
    assert added["state"] == "up", added
    assert "local__add" in {t["name"] for t in added["tools"]}


async def test_stdio_upstream_is_restarted_after_a_kill_and_stopped_on_shutdown(
    gateway_settings: Settings,
) -> None:
    marker = f"stdio-{uuid.uuid4().hex}"
    async with serving(gateway_settings) as gateway:
        await add_stdio_upstream(gateway, marker)
        member = await quick_member(gateway, credits=100)
        async with (
            connect(gateway, member.key, "legacy") as legacy,
            connect(gateway, member.key, "2026-07-28") as modern,
        ):
            first = await legacy.call_tool("local__add", {"a": 40, "b": 2})
            [old_pid] = upstream_pids(marker)
            os.kill(old_pid, signal.SIGKILL)

            async def answers_again() -> bool:
                try:
                    result = await modern.call_tool("local__echo", {"text": "back"})
                except MCPError:  # unknown tool while the upstream is down
                    return False
                return not result.is_error  # else a refunded backend error while it restarts

            await eventually(answers_again, "the stdio upstream answers again", RESTART_SECONDS)
            again = await legacy.call_tool("local__echo", {"text": "legacy too"})
            resource = await modern.read_resource("tollgate://local/res%3A%2F%2Fhello")
        restarted = upstream_pids(marker)
        calls = await wait_settled(gateway.runtime, member.account_id)
        credits = await balance(gateway.runtime, member.account_id)

    assert text_of(first) == "42"
    assert (again.is_error, text_of(again)) == (False, "legacy too")
    assert len(restarted) == 1
    assert restarted != [old_pid]
    assert f"hello from {marker}" in str(resource.contents[0])
    charged = [c for c in calls if c.credits_charged]
    assert [c.success for c in charged] == [True, True, True]
    assert all(c.is_backend_error for c in calls if not c.credits_charged)
    assert credits == 100 - 3
    assert upstream_pids(marker) == []
