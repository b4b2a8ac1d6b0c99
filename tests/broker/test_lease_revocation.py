"""Leases end when what they carry goes away: a disabled or deleted integration, a member
leaving the organization, a lowered role."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from tests.broker.factories import (
    ADMIN_ORGS,
    INTEGRATIONS,
    ORGS,
    add_member,
    admin,
    create_org,
    jira,
    lease,
    lease_details,
    lease_row,
    mcp_headers,
    ok,
    org_integration,
    person,
    personal_integration,
    todoist,
)
from tests.conftest import auth
from tollgate.broker.models import AuditLog
from tollgate.core.runtime import Runtime
from tollgate.identity.models import User


async def revocation_audit(runtime: Runtime, lease_id: str) -> list[dict[str, Any]]:
    async with runtime.sessions() as session:
        rows = await session.execute(
            select(AuditLog).where(
                AuditLog.action == "lease_revoked", AuditLog.target_id == lease_id
            )
        )
        return [r.details for r in rows.scalars()]


async def status(client: httpx.AsyncClient, headers: dict[str, str], lease_id: str) -> str:
    value: str = (await lease_details(client, headers, lease_id))["status"]
    return value


async def test_disabling_a_personal_integration_revokes_the_leases_carrying_it(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime)
    headers = auth(runtime, user)
    todo = await personal_integration(client, headers, "todoist", todoist())
    await personal_integration(client, headers, "github", {"access_token": "gh"})
    token = await mcp_headers(client, runtime, user)
    carrying = await lease(client, token, ["todoist", "github"])
    other = await lease(client, token, ["github"])

    ok(
        await client.patch(
            f"{INTEGRATIONS}/{todo['id']}", json={"status": "DISABLED"}, headers=headers
        )
    )

    assert await status(client, token, carrying["lease_id"]) == "revoked"
    assert await status(client, token, other["lease_id"]) == "active"
    reason = f"integration {todo['id']} changed"
    assert (await lease_row(runtime, carrying["lease_id"])).revoke_reason == reason
    assert await revocation_audit(runtime, carrying["lease_id"]) == [{"reason": reason}]
    assert await revocation_audit(runtime, other["lease_id"]) == []


async def test_renaming_an_integration_leaves_its_leases_alone(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime)
    headers = auth(runtime, user)
    todo = await personal_integration(client, headers, "todoist", todoist())
    token = await mcp_headers(client, runtime, user)
    created = await lease(client, token, ["todoist"])

    ok(await client.patch(f"{INTEGRATIONS}/{todo['id']}", json={"name": "Work"}, headers=headers))

    assert await status(client, token, created["lease_id"]) == "active"


async def test_deleting_an_integration_revokes_the_leases_carrying_it(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime)
    headers = auth(runtime, user)
    todo = await personal_integration(client, headers, "todoist", todoist())
    token = await mcp_headers(client, runtime, user)
    created = await lease(client, token, ["todoist"])

    ok(await client.delete(f"{INTEGRATIONS}/{todo['id']}", headers=headers), 204)

    assert await status(client, token, created["lease_id"]) == "revoked"
    reason = f"integration {todo['id']} deleted"
    assert (await lease_row(runtime, created["lease_id"])).revoke_reason == reason
    assert await revocation_audit(runtime, created["lease_id"]) == [{"reason": reason}]


async def shared_setup(
    client: httpx.AsyncClient, runtime: Runtime
) -> tuple[User, User, dict[str, Any], dict[str, Any]]:
    owner = await person(runtime, "owner")
    member = await person(runtime, "member")
    owner_headers = auth(runtime, owner)
    org = await create_org(client, owner_headers)
    await add_member(client, runtime, owner_headers, org["id"], member)
    integration = await org_integration(client, owner_headers, org["id"], "jira", jira())
    await personal_integration(client, auth(runtime, member), "todoist", todoist())
    return owner, member, org, integration


async def test_disabling_or_deleting_an_organization_integration_revokes_members_leases(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, member, org, integration = await shared_setup(client, runtime)
    owner_headers = auth(runtime, owner)
    token = await mcp_headers(client, runtime, member)
    mixed = await lease(client, token, ["jira", "todoist"])
    personal_only = await lease(client, token, ["todoist"])
    path = f"{ORGS}/{org['id']}/integrations/{integration['id']}"

    ok(await client.patch(path, json={"status": "DISABLED"}, headers=owner_headers))

    assert await status(client, token, mixed["lease_id"]) == "revoked"
    assert await status(client, token, personal_only["lease_id"]) == "active"

    ok(await client.patch(path, json={"status": "ACTIVE"}, headers=owner_headers))
    again = await lease(client, token, ["jira"])
    ok(await client.delete(path, headers=owner_headers), 204)

    assert await status(client, token, again["lease_id"]) == "revoked"
    assert (await lease_row(runtime, again["lease_id"])).revoke_reason == (
        f"integration {integration['id']} deleted"
    )
    assert await status(client, token, personal_only["lease_id"]) == "active"


async def test_narrowing_who_an_integration_is_shared_with_revokes_its_leases(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, member, org, integration = await shared_setup(client, runtime)
    token = await mcp_headers(client, runtime, member)
    created = await lease(client, token, ["jira"])

    ok(
        await client.patch(
            f"{ORGS}/{org['id']}/integrations/{integration['id']}",
            json={"shared_with": "admins_only"},
            headers=auth(runtime, owner),
        )
    )

    assert await status(client, token, created["lease_id"]) == "revoked"


async def test_removing_a_member_revokes_their_leases_with_its_credentials(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, member, org, _ = await shared_setup(client, runtime)
    token = await mcp_headers(client, runtime, member)
    mixed = await lease(client, token, ["jira", "todoist"])
    personal_only = await lease(client, token, ["todoist"])
    owners_lease = await lease(client, await mcp_headers(client, runtime, owner), ["jira"])

    ok(
        await client.delete(
            f"{ORGS}/{org['id']}/members/{member.id}", headers=auth(runtime, owner)
        ),
        204,
    )

    assert await status(client, token, mixed["lease_id"]) == "revoked"
    assert await status(client, token, personal_only["lease_id"]) == "active"
    assert (await lease_row(runtime, owners_lease["lease_id"])).revoked_at is None
    row = await lease_row(runtime, mixed["lease_id"])
    assert row.revoke_reason == "removed from organization"
    assert await revocation_audit(runtime, mixed["lease_id"]) == [
        {"reason": "removed from organization"}
    ]


async def test_leaving_an_organization_revokes_ones_leases_with_its_credentials(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, member, org, _ = await shared_setup(client, runtime)
    token = await mcp_headers(client, runtime, member)
    created = await lease(client, token, ["jira"])

    ok(
        await client.delete(
            f"{ORGS}/{org['id']}/members/{member.id}", headers=auth(runtime, member)
        ),
        204,
    )

    assert await status(client, token, created["lease_id"]) == "revoked"


async def test_an_admin_removing_a_member_revokes_their_leases_too(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, member, org, _ = await shared_setup(client, runtime)
    operator = await admin(runtime)
    token = await mcp_headers(client, runtime, member)
    mixed = await lease(client, token, ["jira", "todoist"])
    personal_only = await lease(client, token, ["todoist"])

    ok(
        await client.delete(
            f"{ADMIN_ORGS}/{org['id']}/members/{member.id}", headers=auth(runtime, operator)
        ),
        204,
    )

    assert await status(client, token, mixed["lease_id"]) == "revoked"
    assert await status(client, token, personal_only["lease_id"]) == "active"
    assert (await lease_row(runtime, mixed["lease_id"])).revoke_reason == (
        "removed from organization"
    )


async def test_lowering_a_members_role_revokes_leases_of_admin_only_credentials(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    helper = await person(runtime, "helper")
    owner_headers = auth(runtime, owner)
    org = await create_org(client, owner_headers)
    await add_member(client, runtime, owner_headers, org["id"], helper, "admin")
    await org_integration(
        client, owner_headers, org["id"], "sentry", {"auth_token": "s"}, shared_with="admins_only"
    )
    token = await mcp_headers(client, runtime, helper)
    created = await lease(client, token, ["sentry"])

    ok(
        await client.patch(
            f"{ORGS}/{org['id']}/members/{helper.id}",
            json={"role": "member"},
            headers=owner_headers,
        )
    )

    assert await status(client, token, created["lease_id"]) == "revoked"
    assert (await lease_row(runtime, created["lease_id"])).revoke_reason == "member role lowered"


async def test_a_revoked_lease_is_not_revoked_again_by_a_later_change(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime)
    headers = auth(runtime, user)
    todo = await personal_integration(client, headers, "todoist", todoist())
    token = await mcp_headers(client, runtime, user)
    created = await lease(client, token, ["todoist"])
    first = ok(
        await client.delete(f"/api/mcp/credentials/lease/{created['lease_id']}", headers=token)
    )

    ok(await client.delete(f"{INTEGRATIONS}/{todo['id']}", headers=headers), 204)

    row = await lease_row(runtime, created["lease_id"])
    assert row.revoke_reason == "revoked by owner"
    assert (await lease_details(client, token, created["lease_id"]))["revoked_at"] == first[
        "revoked_at"
    ]
    assert await revocation_audit(runtime, created["lease_id"]) == [{"reason": None}]
