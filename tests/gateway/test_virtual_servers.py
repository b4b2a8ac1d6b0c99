"""Virtual servers: curated tool, resource and prompt sets at ``/servers/<name>/mcp``, served
with the same keys and metering as ``/mcp``, optionally under the original names, and
limited to chosen users or organizations."""

from __future__ import annotations

from typing import Any

import httpx
import mcp_types as types
import pytest
from mcp import MCPError

from tests.gateway.conftest import (
    ERAS,
    Gateway,
    Member,
    Upstream,
    balance,
    http_to,
    mcp_client_at,
    quick_member,
    register_upstream,
    text_of,
    wait_settled,
)
from tollgate.core.database import transaction
from tollgate.identity import organizations
from tollgate.identity.models import Role, User

SERVERS = "/api/v1/servers"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    },
}
STREAMABLE = {"Accept": "application/json, text/event-stream"}


async def define(gateway: Gateway, admin: Member, **body: Any) -> httpx.Response:
    """POST a virtual server definition."""
    async with http_to(gateway) as http:
        return await http.post(SERVERS, json=body, headers=admin.jwt_headers)


async def defined(gateway: Gateway, admin: Member, **body: Any) -> dict[str, Any]:
    """A virtual server that was accepted."""
    response = await define(gateway, admin, **body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def at(gateway: Gateway, name: str) -> str:
    return f"{gateway.url}/servers/{name}/mcp"


async def echo_with_admin(gateway: Gateway, upstream: Upstream) -> Member:
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=upstream.url, price=2)
    return admin


@pytest.mark.parametrize("mode", ERAS)
async def test_virtual_server_serves_only_its_items_and_meters_them(
    upstream: Upstream, gateway: Gateway, mode: str
) -> None:
    admin = await echo_with_admin(gateway, upstream)
    created = await defined(
        gateway,
        admin,
        name="curated",
        tools=["echo__echo", "echo__add"],
        prompts=["echo__greet"],
        resources=["echo__*"],
    )
    user = await quick_member(gateway, credits=10)

    async with mcp_client_at(at(gateway, "curated"), user.key, mode) as client:
        tools = sorted(t.name for t in (await client.list_tools()).tools)
        added = await client.call_tool("echo__add", {"a": 2, "b": 3})
        with pytest.raises(MCPError) as outside:
            await client.call_tool("echo__slow", {"seconds": 0})
        prompts = [p.name for p in (await client.list_prompts()).prompts]
        resources = [str(r.uri) for r in (await client.list_resources()).resources]

    assert created["path"] == "/servers/curated/mcp"
    assert sorted(created["offered_tools"]) == ["echo__add", "echo__echo"]
    assert tools == ["echo__add", "echo__echo"]
    assert (added.is_error, text_of(added)) == (False, "5")
    assert outside.value.code == types.INVALID_PARAMS
    assert prompts == ["echo__greet"]
    assert resources == ["tollgate://echo/res%3A%2F%2Fhello"]
    [record] = await wait_settled(gateway.runtime, user.account_id)
    assert (record.tool_name, record.credits_charged) == ("echo__add", 2)
    assert await balance(gateway.runtime, user.account_id) == 8


@pytest.mark.parametrize("mode", ERAS)
async def test_unprefixed_virtual_server_serves_the_upstream_under_its_own_names(
    upstream: Upstream, gateway: Gateway, mode: str
) -> None:
    admin = await echo_with_admin(gateway, upstream)
    everything = ["echo__*"]
    await defined(
        gateway,
        admin,
        name="plain",
        tools=everything,
        resources=everything,
        prompts=everything,
        prefixed=False,
    )
    user = await quick_member(gateway, credits=10)

    async with mcp_client_at(at(gateway, "plain"), user.key, mode) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        added = await client.call_tool("add", {"a": 1, "b": 1})
        [resource] = (await client.list_resources()).resources
        read = await client.read_resource("res://hello")
        [template] = (await client.list_resource_templates()).resource_templates
        prompt = await client.get_prompt("greet", {"who": "al"})
        completed = await client.complete(
            types.ResourceTemplateReference(uri=template.uri_template),
            {"name": "who", "value": "b"},
        )

    assert {"echo", "add", "slow"} <= tools
    assert text_of(added) == "2"
    assert str(resource.uri) == "res://hello"
    assert [str(c.uri) for c in read.contents] == ["res://hello"]
    assert template.uri_template == "res://greeting/{who}"
    assert prompt.messages
    assert completed.completion.values == ["bob"]
    [record] = await wait_settled(gateway.runtime, user.account_id)
    assert record.tool_name == "echo__add"


async def enrolled_in_new_organization(gateway: Gateway, user_id: int) -> int:
    async with transaction(gateway.runtime.sessions) as session:
        org = await organizations.create_organization(
            session, name="Acme", slug="acme", owner=await session.get(User, user_id)
        )
        return org.id


async def tools_status(gateway: Gateway, name: str, key: str) -> int:
    """The HTTP status of an ``initialize`` at a virtual server with ``key``."""
    async with http_to(gateway) as http:
        response = await http.post(
            f"/servers/{name}/mcp",
            json=INITIALIZE,
            headers={"Authorization": f"Bearer {key}", **STREAMABLE},
        )
    return response.status_code


async def test_restricted_virtual_server_admits_listed_users_and_organization_members(
    upstream: Upstream, gateway: Gateway
) -> None:
    admin = await echo_with_admin(gateway, upstream)
    listed, member, outsider = [await quick_member(gateway) for _ in range(3)]
    org_id = await enrolled_in_new_organization(gateway, member.user_id)
    await defined(
        gateway,
        admin,
        name="team",
        tools=["echo__echo"],
        allowed_users=[listed.user_id],
        allowed_organizations=[org_id],
    )

    assert await tools_status(gateway, "team", listed.key) == 200
    assert await tools_status(gateway, "team", member.key) == 200
    async with http_to(gateway) as http:
        refused = await http.post(
            "/servers/team/mcp",
            json=INITIALIZE,
            headers={"Authorization": f"Bearer {outsider.key}", **STREAMABLE},
        )
    assert refused.status_code == 403
    assert refused.json()["detail"]["code"] == "server_forbidden"
    async with mcp_client_at(at(gateway, "team"), member.key) as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["echo__echo"]


async def test_session_opened_on_one_path_is_unknown_on_another(
    upstream: Upstream, gateway: Gateway
) -> None:
    admin = await echo_with_admin(gateway, upstream)
    await defined(gateway, admin, name="small", tools=["echo__echo"])
    user = await quick_member(gateway)
    headers = {"Authorization": f"Bearer {user.key}", **STREAMABLE}

    async with http_to(gateway) as http:
        opened = await http.post("/mcp", json=INITIALIZE, headers=headers)
        session = {"Mcp-Session-Id": opened.headers["mcp-session-id"]}
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        elsewhere = await http.post(
            "/servers/small/mcp", json=listing, headers={**headers, **session}
        )

    assert opened.status_code == 200
    assert elsewhere.status_code == 404


async def test_server_definitions_are_checked_and_each_path_has_its_own_metadata(
    upstream: Upstream, gateway: Gateway
) -> None:
    admin = await echo_with_admin(gateway, upstream)
    await register_upstream(gateway, admin, name="other", url=upstream.url)
    user = await quick_member(gateway)
    unknown = await define(gateway, admin, name="a", tools=["nowhere__echo"])
    mixed = await define(
        gateway, admin, name="b", tools=["echo__echo", "other__echo"], prefixed=False
    )
    malformed = await define(gateway, admin, name="c", tools=["echo"])
    await defined(gateway, admin, name="d", tools=["echo__echo"], title="Dee")
    duplicate = await define(gateway, admin, name="d", tools=["echo__echo"])

    async with http_to(gateway) as http:
        not_admin = await http.get(SERVERS, headers=user.jwt_headers)
        metadata = await http.get("/.well-known/oauth-protected-resource/servers/d/mcp")
        no_metadata = await http.get("/.well-known/oauth-protected-resource/servers/zz/mcp")
        challenge = await http.post("/servers/d/mcp", json=INITIALIZE, headers=STREAMABLE)
        listed = await http.get(SERVERS, headers=admin.jwt_headers)
        removed = await http.delete(f"{SERVERS}/d", headers=admin.jwt_headers)
        gone = await http.post(
            "/servers/d/mcp",
            json=INITIALIZE,
            headers={"Authorization": f"Bearer {user.key}", **STREAMABLE},
        )

    assert (unknown.status_code, unknown.json()["detail"]["code"]) == (422, "unknown_upstream")
    assert (mixed.status_code, mixed.json()["detail"]["code"]) == (422, "prefix_required")
    assert malformed.status_code == 422
    assert (duplicate.status_code, duplicate.json()["detail"]["code"]) == (409, "server_exists")
    assert not_admin.status_code == 403
    assert metadata.json()["resource"] == f"{gateway.url}/servers/d/mcp"
    assert metadata.json()["resource_name"] == "Dee"
    assert no_metadata.status_code == 404
    assert challenge.status_code == 401
    assert "oauth-protected-resource/servers/d/mcp" in challenge.headers["www-authenticate"]
    assert [s["name"] for s in listed.json()] == ["d"]
    assert removed.status_code == 204
    assert gone.status_code == 404


async def test_changing_a_virtual_server_changes_what_it_offers(
    upstream: Upstream, gateway: Gateway
) -> None:
    admin = await echo_with_admin(gateway, upstream)
    await defined(gateway, admin, name="grow", tools=["echo__echo"])
    user = await quick_member(gateway)

    async with http_to(gateway) as http:
        changed = await http.patch(
            f"{SERVERS}/grow",
            json={"tools": ["echo__echo", "echo__add"]},
            headers=admin.jwt_headers,
        )
        refused = await http.patch(
            f"{SERVERS}/grow", json={"tools": ["gone__echo"]}, headers=admin.jwt_headers
        )
        kept = await http.get(f"{SERVERS}/grow", headers=admin.jwt_headers)
    async with mcp_client_at(at(gateway, "grow"), user.key) as client:
        tools = sorted(t.name for t in (await client.list_tools()).tools)

    assert changed.status_code == 200, changed.text
    assert refused.status_code == 422
    assert kept.json()["tools"] == ["echo__echo", "echo__add"]
    assert tools == ["echo__add", "echo__echo"]
