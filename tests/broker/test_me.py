"""``GET /api/mcp/me``: who a token belongs to and which services it can lease (seed 001)."""

from __future__ import annotations

import httpx

from tests.broker.factories import (
    ME,
    add_member,
    create_org,
    jira,
    mcp_headers,
    notion,
    ok,
    org_integration,
    person,
    personal_integration,
    todoist,
)
from tests.conftest import auth
from tollgate.core.runtime import Runtime


async def test_me_answers_in_the_seed_shape_with_personal_and_shared_services(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner", display_name="Test User")
    server = await person(runtime, "server")
    owner_headers, server_headers = auth(runtime, owner), auth(runtime, server)
    team = await create_org(client, owner_headers, "Development Team")
    clients = await create_org(client, owner_headers, "Client Projects")
    await add_member(client, runtime, owner_headers, team["id"], server, "member")
    await add_member(client, runtime, owner_headers, clients["id"], server, "admin")
    await org_integration(client, owner_headers, team["id"], "jira", jira())
    await org_integration(client, owner_headers, team["id"], "notion", notion())
    await org_integration(
        client,
        owner_headers,
        clients["id"],
        "sentry",
        {"auth_token": "sntrys_x"},
        shared_with="admins_only",
    )
    await personal_integration(client, server_headers, "todoist", todoist())
    await personal_integration(client, server_headers, "openai", {"api_key": "sk-x"})
    await personal_integration(
        client,
        server_headers,
        "gmail",
        {"client_id": "id", "client_secret": "cs", "refresh_token": "rt"},
        status="ERROR",
    )

    body = ok(await client.get(ME, headers=await mcp_headers(client, runtime, server)))

    assert body == {
        "user_id": server.id,
        "email": server.email,
        "name": "server",
        "organizations": [
            {"id": team["id"], "name": "Development Team", "role": "member"},
            {"id": clients["id"], "name": "Client Projects", "role": "admin"},
        ],
        "available_services": ["jira", "notion", "openai", "sentry", "todoist"],
    }
    owner_view = ok(await client.get(ME, headers=await mcp_headers(client, runtime, owner)))
    assert owner_view["name"] == "Test User"
    assert [o["role"] for o in owner_view["organizations"]] == ["owner", "owner"]
    assert owner_view["available_services"] == ["jira", "notion", "sentry"]


async def test_me_leaves_out_disabled_integrations_and_unshared_organization_services(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    member = await person(runtime, "member")
    outsider = await person(runtime, "outsider")
    owner_headers = auth(runtime, owner)
    org = await create_org(client, owner_headers)
    await add_member(client, runtime, owner_headers, org["id"], member)
    await org_integration(
        client, owner_headers, org["id"], "sentry", {"auth_token": "t"}, shared_with="admins_only"
    )
    await org_integration(
        client,
        owner_headers,
        org["id"],
        "slack",
        {"bot_token": "b"},
        shared_with="users",
        shared_user_ids=[outsider.id],
    )
    await org_integration(client, owner_headers, org["id"], "jira", jira(), status="DISABLED")
    await personal_integration(
        client, auth(runtime, member), "todoist", todoist(), status="DISABLED"
    )

    member_view = ok(await client.get(ME, headers=await mcp_headers(client, runtime, member)))
    outsider_view = ok(await client.get(ME, headers=await mcp_headers(client, runtime, outsider)))

    assert member_view["available_services"] == []
    assert outsider_view["available_services"] == []
    assert outsider_view["organizations"] == []


async def test_me_accepts_the_users_jwt_as_well(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime, "jwt-user")
    await personal_integration(client, auth(runtime, user), "github", {"access_token": "gh"})

    body = ok(await client.get(ME, headers=auth(runtime, user)))

    assert body["user_id"] == user.id
    assert body["available_services"] == ["github"]
