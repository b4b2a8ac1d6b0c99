"""A stdio upstream: Tollgate starts its process, serves its tools, starts it again after it
is killed, and stops it on shutdown; only a superuser may add one through the API, only when
the operator allowed it, and its process inherits none of Tollgate's secrets."""

from __future__ import annotations

import json
import os
import signal
import sys
import uuid
from pathlib import Path

import pytest
from mcp import MCPError

from tests.gateway.conftest import (
    Gateway,
    Upstream,
    balance,
    connect,
    http_to,
    quick_member,
    register_upstream,
    serving,
    text_of,
    wait_settled,
)
from tests.waiting import eventually
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


@pytest.fixture
def stdio_allowed(gateway_settings: Settings) -> Settings:
    """Settings of a gateway whose operator allows stdio upstreams through the API."""
    return gateway_settings.model_copy(update={"allow_stdio_upstreams": True})


async def test_stdio_upstream_is_restarted_after_a_kill_and_stopped_on_shutdown(
    stdio_allowed: Settings,
) -> None:
    marker = f"stdio-{uuid.uuid4().hex}"
    async with serving(stdio_allowed) as gateway:
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


def stdio_body(name: str = "local", **extra: object) -> dict[str, object]:
    return {
        "name": name,
        "transport": "stdio",
        "command": sys.executable,
        "args": [UPSTREAM_SCRIPT, "stdio", "--name", name],
        **extra,
    }


async def test_stdio_upstream_is_refused_through_the_api_unless_allowed(
    gateway_settings: Settings,
) -> None:
    async with serving(gateway_settings) as gateway:
        superuser = await quick_member(gateway, role=Role.ADMIN)
        async with http_to(gateway) as http:
            refused = await http.post(
                "/api/v1/upstreams", json=stdio_body(), headers=superuser.jwt_headers
            )
            listed = await http.get("/api/v1/upstreams", headers=superuser.jwt_headers)

    assert refused.status_code == 403, refused.text
    assert refused.json()["detail"]["code"] == "stdio_upstreams_disabled"
    assert listed.json() == []


async def test_only_a_superuser_adds_or_changes_what_a_stdio_upstream_runs(
    stdio_allowed: Settings, upstream: Upstream
) -> None:
    async with serving(stdio_allowed) as gateway:
        superuser = await quick_member(gateway, role=Role.ADMIN)
        admin = await quick_member(gateway, role=Role.ADMIN, superuser=False)
        await register_upstream(gateway, admin, name="web", url=upstream.url)
        async with http_to(gateway) as http:
            by_admin = await http.post(
                "/api/v1/upstreams", json=stdio_body(), headers=admin.jwt_headers
            )
            by_superuser = await http.post(
                "/api/v1/upstreams", json=stdio_body(), headers=superuser.jwt_headers
            )
            changes = {
                label: await http.patch(
                    f"/api/v1/upstreams/{target}", json=change, headers=admin.jwt_headers
                )
                for label, target, change in [
                    ("command", "local", {"command": "/bin/sh"}),
                    ("args", "local", {"args": ["-c", "id"]}),
                    ("env", "local", {"env": {"PYTHONSTARTUP": "/tmp/x.py"}}),
                    ("command on a web upstream", "web", {"command": "/bin/sh"}),
                    ("into stdio", "web", {"transport": "stdio", "command": "/bin/sh"}),
                ]
            }
            price = await http.patch(
                "/api/v1/upstreams/local", json={"price": 3}, headers=admin.jwt_headers
            )
            by_superuser_change = await http.patch(
                "/api/v1/upstreams/local",
                json={"args": [UPSTREAM_SCRIPT, "stdio", "--name", "changed"]},
                headers=superuser.jwt_headers,
            )

    assert by_admin.status_code == 403, by_admin.text
    assert by_admin.json()["detail"]["code"] == "superuser_required"
    assert by_superuser.status_code == 201, by_superuser.text
    for label, response in changes.items():
        expected = 422 if label == "into stdio" else 403
        assert response.status_code == expected, (label, response.text)
        if expected == 403:
            assert response.json()["detail"]["code"] == "superuser_required", label
    assert price.status_code == 200, price.text
    assert (price.json()["price"], price.json()["command"]) == (3, sys.executable)
    assert price.json()["args"] == [UPSTREAM_SCRIPT, "stdio", "--name", "local"]
    assert by_superuser_change.status_code == 200, by_superuser_change.text


ENVIRONMENT_SERVER = """
import json, os
from mcp.server.mcpserver import MCPServer
server = MCPServer("environment", log_level="WARNING")

@server.tool()
def environment() -> str:
    return json.dumps(dict(os.environ))

server.run("stdio")
"""
"""A stdio upstream whose one tool answers with its whole process environment."""

SECRET_VARIABLES = {
    "DATABASE_URL": "postgresql://tollgate:hunter2@db/tollgate",
    "REDIS_URL": "redis://:hunter2@cache:6379/0",
    "JWT_SECRET_KEY": "jwt-secret-from-env",
    "SECRET_KEY": "app-secret-from-env",
    "MCP_TOKEN": "mcp_token_from_env",
    "MCP_WEBHOOK_SECRET": "webhook-secret-from-env",
    "STRIPE_WEBHOOK_SECRET": "whsec_from_env",
    "TOLLGATE_ENCRYPTION_KEYS": "k1:c2VjcmV0",
    "TOLLGATE_DATA_DIR": "/var/lib/tollgate",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-from-env",
}


async def test_stdio_upstream_process_inherits_no_secret_of_the_gateway(
    stdio_allowed: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRET_VARIABLES.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LANG", "C.UTF-8")
    async with serving(stdio_allowed) as gateway:
        superuser = await quick_member(gateway, role=Role.ADMIN)
        added = await register_upstream(
            gateway,
            superuser,
            name="env",
            transport="stdio",
            command=sys.executable,
            args=["-c", ENVIRONMENT_SERVER],
            env={"DECLARED": "declared-value"},
            price=0,
        )
        member = await quick_member(gateway, credits=10)
        async with connect(gateway, member.key) as client:
            result = await client.call_tool("env__environment", {})

    assert added["state"] == "up", added
    seen: dict[str, str] = json.loads(text_of(result))
    leaked = {name for name in seen if name in SECRET_VARIABLES or name.startswith("TOLLGATE_")}
    assert leaked == set()
    assert not any(value in SECRET_VARIABLES.values() for value in seen.values())
    assert seen["DECLARED"] == "declared-value"
    assert seen["LANG"] == "C.UTF-8"
    assert seen["PATH"] == os.environ["PATH"]
