"""Which credential a lease gets: personal first, then organizations by their sharing rules."""

from __future__ import annotations

import httpx

from tests.broker.factories import (
    LEASES,
    ME,
    add_member,
    assert_error,
    create_org,
    jira,
    lease,
    mcp_headers,
    ok,
    org_integration,
    person,
    personal_integration,
)
from tests.conftest import auth
from tollgate.core.runtime import Runtime
from tollgate.identity.models import User


async def leased_jira(client: httpx.AsyncClient, runtime: Runtime, user: User) -> dict[str, str]:
    created = await lease(client, await mcp_headers(client, runtime, user), ["jira"])
    credentials: dict[str, str] = created["credentials"]["jira"]
    return credentials


async def jira_refused(client: httpx.AsyncClient, runtime: Runtime, user: User) -> None:
    headers = await mcp_headers(client, runtime, user)
    refused = await client.post(LEASES, json={"services": ["jira"]}, headers=headers)
    assert assert_error(refused, 422, "credentials_unavailable")["services"] == ["jira"]
    assert "jira" not in ok(await client.get(ME, headers=headers))["available_services"]


async def test_a_personal_credential_beats_the_organizations(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    member = await person(runtime, "member")
    owner_headers = auth(runtime, owner)
    org = await create_org(client, owner_headers)
    await add_member(client, runtime, owner_headers, org["id"], member)
    shared, own = jira(), jira()
    await org_integration(client, owner_headers, org["id"], "jira", shared)
    await personal_integration(client, auth(runtime, member), "jira", own)

    created = await lease(client, await mcp_headers(client, runtime, member), ["jira"])

    assert created["credentials"]["jira"] == own
    assert created["credential_scope"] == "personal"
    assert created["included_org_credentials"] == []
    assert await leased_jira(client, runtime, owner) == shared


async def test_a_disabled_personal_credential_falls_back_to_the_organizations(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    member = await person(runtime, "member")
    owner_headers = auth(runtime, owner)
    org = await create_org(client, owner_headers)
    await add_member(client, runtime, owner_headers, org["id"], member)
    shared = jira()
    await org_integration(client, owner_headers, org["id"], "jira", shared)
    await personal_integration(client, auth(runtime, member), "jira", jira(), status="DISABLED")

    created = await lease(client, await mcp_headers(client, runtime, member), ["jira"])

    assert created["credentials"]["jira"] == shared
    assert created["credential_scope"] == "organization"


async def test_admins_only_reaches_owners_and_admins_but_not_members(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    org_admin = await person(runtime, "org-admin")
    member = await person(runtime, "member")
    owner_headers = auth(runtime, owner)
    org = await create_org(client, owner_headers)
    await add_member(client, runtime, owner_headers, org["id"], org_admin, "admin")
    await add_member(client, runtime, owner_headers, org["id"], member, "member")
    secret_jira = jira()
    await org_integration(
        client, owner_headers, org["id"], "jira", secret_jira, shared_with="admins_only"
    )

    assert await leased_jira(client, runtime, org_admin) == secret_jira
    assert await leased_jira(client, runtime, owner) == secret_jira
    await jira_refused(client, runtime, member)


async def test_a_list_of_user_ids_reaches_only_those_members(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    chosen = await person(runtime, "chosen")
    left_out = await person(runtime, "left-out")
    outsider = await person(runtime, "outsider")
    owner_headers = auth(runtime, owner)
    org = await create_org(client, owner_headers)
    await add_member(client, runtime, owner_headers, org["id"], chosen)
    await add_member(client, runtime, owner_headers, org["id"], left_out)
    credentials = jira()
    await org_integration(
        client,
        owner_headers,
        org["id"],
        "jira",
        credentials,
        shared_with="users",
        shared_user_ids=[chosen.id, outsider.id],
    )

    assert await leased_jira(client, runtime, chosen) == credentials
    await jira_refused(client, runtime, left_out)
    await jira_refused(client, runtime, outsider)
    await jira_refused(client, runtime, owner)


async def test_all_members_reaches_every_member_and_nobody_else(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    member = await person(runtime, "member")
    outsider = await person(runtime, "outsider")
    owner_headers = auth(runtime, owner)
    org = await create_org(client, owner_headers)
    await add_member(client, runtime, owner_headers, org["id"], member)
    credentials = jira()
    await org_integration(client, owner_headers, org["id"], "jira", credentials)

    assert await leased_jira(client, runtime, member) == credentials
    await jira_refused(client, runtime, outsider)


async def test_among_organizations_the_lowest_id_wins(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    member = await person(runtime, "member")
    owner_headers = auth(runtime, owner)
    first = await create_org(client, owner_headers, "First")
    second = await create_org(client, owner_headers, "Second")
    assert first["id"] < second["id"]
    await add_member(client, runtime, owner_headers, second["id"], member)
    await add_member(client, runtime, owner_headers, first["id"], member)
    from_second, from_first = jira(), jira()
    await org_integration(client, owner_headers, second["id"], "jira", from_second)
    await org_integration(client, owner_headers, first["id"], "jira", from_first)
    await org_integration(client, owner_headers, second["id"], "sentry", {"auth_token": "s"})

    leases = [
        await lease(client, await mcp_headers(client, runtime, member), ["jira", "sentry"])
        for _ in range(3)
    ]

    for created in leases:
        assert created["credentials"]["jira"] == from_first
        assert created["credential_scope"] == "organization"
        assert created["included_org_credentials"] == [
            {"organization_id": first["id"], "services": ["jira"]},
            {"organization_id": second["id"], "services": ["sentry"]},
        ]


async def test_an_organization_that_does_not_share_yields_to_one_that_does(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    member = await person(runtime, "member")
    owner_headers = auth(runtime, owner)
    first = await create_org(client, owner_headers, "First")
    second = await create_org(client, owner_headers, "Second")
    await add_member(client, runtime, owner_headers, first["id"], member)
    await add_member(client, runtime, owner_headers, second["id"], member)
    await org_integration(
        client, owner_headers, first["id"], "jira", jira(), shared_with="admins_only"
    )
    shared = jira()
    await org_integration(client, owner_headers, second["id"], "jira", shared)

    created = await lease(client, await mcp_headers(client, runtime, member), ["jira"])

    assert created["credentials"]["jira"] == shared
    assert created["included_org_credentials"] == [
        {"organization_id": second["id"], "services": ["jira"]}
    ]
