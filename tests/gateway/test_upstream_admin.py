"""The upstream admin API: only admins, validated bodies, unique names, deletion, and secrets
that are stored encrypted and never shown."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest
from mcp import MCPError
from sqlalchemy import select

from tests.gateway.conftest import (
    Gateway,
    Member,
    Upstream,
    WatchedGateway,
    connect,
    http_to,
    quick_member,
    register_upstream,
    tool_names,
)
from tests.live import free_port
from tollgate.gateway.models import Upstream as UpstreamRow
from tollgate.identity.models import Role

NOTIFICATION_SECONDS = 10.0
"""A catalogue change reaches a connected client well within this."""


async def request(
    gateway: Gateway, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any
) -> httpx.Response:
    async with http_to(gateway) as http:
        return await http.request(method, path, headers=headers, **kw)


def every_route(url: str) -> list[tuple[str, str, dict[str, Any]]]:
    body = {"name": "echo", "url": url}
    return [
        ("GET", "/api/v1/upstreams", {}),
        ("POST", "/api/v1/upstreams", {"json": body}),
        ("GET", "/api/v1/upstreams/echo", {}),
        ("PATCH", "/api/v1/upstreams/echo", {"json": {"price": 0}}),
        ("POST", "/api/v1/upstreams/echo/refresh", {}),
        ("DELETE", "/api/v1/upstreams/echo", {}),
    ]


async def test_only_admins_manage_upstreams(upstream: Upstream, gateway: Gateway) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=upstream.url, price=1)
    user = await quick_member(gateway)

    for method, path, kw in every_route(upstream.url):
        anonymous = await request(gateway, method, path, **kw)
        by_user = await request(gateway, method, path, user.jwt_headers, **kw)
        by_key = await request(gateway, method, path, {"Authorization": f"Bearer {user.key}"}, **kw)
        assert anonymous.status_code == 401, (method, path)
        assert by_user.status_code == 403, (method, path, by_user.text)
        assert by_key.status_code in (401, 403), (method, path)

    described = await request(gateway, "GET", "/api/v1/upstreams/echo", admin.jwt_headers)
    assert described.status_code == 200
    assert described.json()["price"] == 1


INVALID_BODIES: dict[str, dict[str, Any]] = {
    "uppercase name": {"name": "Echo", "url": "http://127.0.0.1:9/mcp"},
    "name with the separator": {"name": "echo__x", "url": "http://127.0.0.1:9/mcp"},
    "name starting with a digit": {"name": "1echo", "url": "http://127.0.0.1:9/mcp"},
    "name too long": {"name": "e" * 33, "url": "http://127.0.0.1:9/mcp"},
    "no url": {"name": "echo"},
    "url without a scheme": {"name": "echo", "url": "127.0.0.1:9/mcp"},
    "stdio without a command": {"name": "echo", "transport": "stdio"},
    "unknown transport": {"name": "echo", "transport": "sse", "url": "http://127.0.0.1:9/"},
    "broker without a service": {
        "name": "echo",
        "url": "http://127.0.0.1:9/mcp",
        "auth": "broker",
        "broker_header": "Authorization: Bearer {api_token}",
    },
    "broker header without a field": {
        "name": "echo",
        "url": "http://127.0.0.1:9/mcp",
        "auth": "broker",
        "broker_service": "jira",
        "broker_header": "Authorization: Bearer fixed",
    },
    "static without headers": {"name": "echo", "url": "http://127.0.0.1:9/mcp", "auth": "static"},
    "header value with a line break": {
        "name": "echo",
        "url": "http://127.0.0.1:9/mcp",
        "auth": "static",
        "headers": {"X-Key": "a\r\nX-Other: b"},
    },
    "negative price": {"name": "echo", "url": "http://127.0.0.1:9/mcp", "price": -1},
    "zero timeout": {"name": "echo", "url": "http://127.0.0.1:9/mcp", "timeout_seconds": 0},
    "unknown field": {"name": "echo", "url": "http://127.0.0.1:9/mcp", "colour": "red"},
}


async def test_invalid_upstream_bodies_are_refused_with_422(gateway: Gateway) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)

    for label, body in INVALID_BODIES.items():
        response = await request(gateway, "POST", "/api/v1/upstreams", admin.jwt_headers, json=body)
        assert response.status_code == 422, (label, response.text)
    bad_patch = await request(
        gateway, "PATCH", "/api/v1/upstreams/Bad_Name", admin.jwt_headers, json={"price": 1}
    )
    listed = await request(gateway, "GET", "/api/v1/upstreams", admin.jwt_headers)

    assert bad_patch.status_code == 422
    assert listed.json() == []


async def test_upstream_name_is_unique(upstream: Upstream, gateway: Gateway) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=upstream.url, price=1)

    again = await request(
        gateway,
        "POST",
        "/api/v1/upstreams",
        admin.jwt_headers,
        json={"name": "echo", "url": upstream.url, "price": 9},
    )

    assert again.status_code == 409, again.text
    assert again.json()["detail"]["code"] == "upstream_exists"
    listed = await request(gateway, "GET", "/api/v1/upstreams", admin.jwt_headers)
    assert [(u["name"], u["price"]) for u in listed.json()] == [("echo", 1)]


async def test_deleted_upstream_is_gone_with_its_tools(
    upstream: Upstream, watched_gateway: WatchedGateway
) -> None:
    gateway = watched_gateway
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=upstream.url)
    member = await quick_member(gateway)
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async with connect(gateway, member.key, "legacy", message_handler=on_message) as client:
        assert "echo__echo" in await tool_names(client)
        await gateway.wait_event_streams()
        deleted = await request(gateway, "DELETE", "/api/v1/upstreams/echo", admin.jwt_headers)
        with anyio.fail_after(NOTIFICATION_SECONDS):
            await changed.wait()
        after = await tool_names(client)

    read = await request(gateway, "GET", "/api/v1/upstreams/echo", admin.jwt_headers)
    deleted_again = await request(gateway, "DELETE", "/api/v1/upstreams/echo", admin.jwt_headers)
    refreshed = await request(gateway, "POST", "/api/v1/upstreams/echo/refresh", admin.jwt_headers)
    assert deleted.status_code == 204
    assert after == set()
    assert read.status_code == 404
    assert read.json()["detail"]["code"] == "upstream_not_found"
    assert deleted_again.status_code == 404
    assert refreshed.status_code == 404


async def test_upstream_secrets_are_masked_in_answers_and_encrypted_at_rest(
    upstream: Upstream, gateway: Gateway
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    secret, other_secret = "Bearer top-secret-value", "another-secret-value"
    created = await register_upstream(
        gateway,
        admin,
        name="echo",
        url=upstream.url,
        auth="static",
        headers={"Authorization": secret},
        env={"API_KEY": other_secret},
    )
    patched = await request(
        gateway,
        "PATCH",
        "/api/v1/upstreams/echo",
        admin.jwt_headers,
        json={"headers": {"Authorization": secret, "X-Extra": other_secret}},
    )
    read = await request(gateway, "GET", "/api/v1/upstreams/echo", admin.jwt_headers)
    listed = await request(gateway, "GET", "/api/v1/upstreams", admin.jwt_headers)

    assert created["headers"] == {"Authorization": "********"}
    assert created["env"] == {"API_KEY": "********"}
    assert patched.json()["headers"] == {"Authorization": "********", "X-Extra": "********"}
    for answer in (str(created), patched.text, read.text, listed.text):
        assert "top-secret-value" not in answer
        assert other_secret not in answer
    async with gateway.runtime.sessions() as session:
        row = (
            await session.execute(select(UpstreamRow).where(UpstreamRow.name == "echo"))
        ).scalar_one()
    assert row.headers_envelope
    assert "top-secret-value" not in row.headers_envelope
    assert row.env_envelope
    assert other_secret not in row.env_envelope
    assert set(upstream.recorder.seen) == {secret}


async def test_admin_answer_lists_the_tools_found_with_their_prices(
    upstream: Upstream, gateway: Gateway
) -> None:
    admin: Member = await quick_member(gateway, role=Role.ADMIN)

    added = await register_upstream(
        gateway, admin, name="echo", url=upstream.url, price=2, tool_prices={"slow": 7}
    )

    prices = {t["name"]: (t["upstream_tool"], t["price"]) for t in added["tools"]}
    assert prices["echo__echo"] == ("echo", 2)
    assert prices["echo__slow"] == ("slow", 7)
    assert added["state"] == "up"
    assert added["protocol_era"] == "2026-07-28"
    assert added["last_seen_at"] is not None


async def test_upstream_nobody_answers_is_registered_down_with_its_error(
    gateway: Gateway,
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    member = await quick_member(gateway, credits=5)

    added = await register_upstream(
        gateway, admin, name="void", url=f"http://127.0.0.1:{free_port()}/mcp"
    )
    async with connect(gateway, member.key, "2026-07-28") as client:
        offered = await tool_names(client)
        with pytest.raises(MCPError) as unknown:
            await client.call_tool("void__echo", {"text": "x"})

    assert (added["state"], added["tools"], added["last_seen_at"]) == ("down", [], None)
    assert added["last_error"]
    assert offered == set()
    assert unknown.value.code == types.INVALID_PARAMS
