"""The admin API changes organizations under the members' API's rules, audited the same way."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.broker.factories import (
    ADMIN_ORGS,
    AUDIT,
    ORGS,
    add_member,
    admin,
    assert_error,
    create_org,
    lease,
    lease_row,
    mcp_headers,
    ok,
    org_integration,
    person,
)
from tests.conftest import auth
from tollgate.core.database import transaction
from tollgate.core.runtime import Runtime
from tollgate.identity import organizations as orgs
from tollgate.identity.models import Membership, OrgRole


async def org_trail(
    client: httpx.AsyncClient, reader: dict[str, str], org_id: int
) -> list[tuple[str, int | None, dict[str, Any]]]:
    """The organization's audit rows, oldest first, as (action, actor, details)."""
    page = ok(
        await client.get(
            AUDIT,
            params={"target_type": "organization", "target_id": str(org_id)},
            headers=reader,
        )
    )
    return [(e["action"], e["actor_user_id"], e["details"]) for e in reversed(page["entries"])]


async def test_an_admin_creating_an_organization_is_audited_like_a_member_creating_one(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    operator = await admin(runtime)
    owner = await person(runtime, "owner")
    by_member = await create_org(client, auth(runtime, owner))
    by_admin = ok(
        await client.post(
            ADMIN_ORGS,
            json={"name": "Acme", "slug": "acme", "owner_id": owner.id},
            headers=auth(runtime, operator),
        ),
        201,
    )

    assert await org_trail(client, auth(runtime, operator), by_member["id"]) == [
        ("organization_created", owner.id, {"slug": by_member["slug"]})
    ]
    assert await org_trail(client, auth(runtime, operator), by_admin["id"]) == [
        ("organization_created", operator.id, {"slug": "acme"})
    ]


async def test_admin_and_member_role_changes_and_removals_write_the_same_audit_rows(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    member = await person(runtime, "member")
    operator = await admin(runtime)
    trails = []
    for path, headers in ((ORGS, auth(runtime, owner)), (ADMIN_ORGS, auth(runtime, operator))):
        org = await create_org(client, auth(runtime, owner))
        await add_member(client, runtime, auth(runtime, owner), org["id"], member)
        members = f"{path}/{org['id']}/members"
        if path == ORGS:
            ok(
                await client.patch(
                    f"{members}/{member.id}", json={"role": "admin"}, headers=headers
                )
            )
        else:
            body = {"user_id": member.id, "role": "admin"}
            ok(await client.post(members, json=body, headers=headers), 201)
        ok(await client.delete(f"{members}/{member.id}", headers=headers), 204)
        trails.append((await org_trail(client, auth(runtime, operator), org["id"]))[-2:])

    by_owner, by_admin = trails
    changed = {"user_id": member.id, "from": "member", "to": "admin"}
    removed = {"user_id": member.id}
    assert by_owner == [
        ("member_role_changed", owner.id, changed),
        ("member_removed", owner.id, removed),
    ]
    assert by_admin == [
        ("member_role_changed", operator.id, changed),
        ("member_removed", operator.id, removed),
    ]


async def test_an_admin_lowering_a_managers_role_revokes_their_leases_of_admin_only_credentials(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    helper = await person(runtime, "helper")
    operator = await admin(runtime)
    owner_headers = auth(runtime, owner)
    org = await create_org(client, owner_headers)
    await add_member(client, runtime, owner_headers, org["id"], helper, "admin")
    await org_integration(
        client, owner_headers, org["id"], "sentry", {"auth_token": "s"}, shared_with="admins_only"
    )
    created = await lease(client, await mcp_headers(client, runtime, helper), ["sentry"])

    ok(
        await client.post(
            f"{ADMIN_ORGS}/{org['id']}/members",
            json={"user_id": helper.id, "role": "member"},
            headers=auth(runtime, operator),
        ),
        201,
    )

    row = await lease_row(runtime, created["lease_id"])
    assert row.revoked_at is not None
    assert row.revoke_reason == "member role lowered"


async def test_the_admin_api_keeps_an_organizations_last_owner(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    successor = await person(runtime, "successor")
    headers = auth(runtime, await admin(runtime))
    org = await create_org(client, auth(runtime, owner))
    members = f"{ADMIN_ORGS}/{org['id']}/members"

    demote = {"user_id": owner.id, "role": "admin"}
    assert_error(await client.post(members, json=demote, headers=headers), 409, "last_owner")
    assert_error(await client.delete(f"{members}/{owner.id}", headers=headers), 409, "last_owner")

    ok(
        await client.post(
            members, json={"user_id": successor.id, "role": "owner"}, headers=headers
        ),
        201,
    )
    ok(await client.delete(f"{members}/{owner.id}", headers=headers), 204)
    listed = ok(await client.get(members, headers=headers))
    assert [(m["user_id"], m["role"]) for m in listed] == [(successor.id, "owner")]


async def test_an_admin_deleting_an_organization_audits_each_member_leaving(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    member = await person(runtime, "member")
    operator = await admin(runtime)
    org = await create_org(client, auth(runtime, owner))
    await add_member(client, runtime, auth(runtime, owner), org["id"], member)

    ok(await client.delete(f"{ADMIN_ORGS}/{org['id']}", headers=auth(runtime, operator)), 204)

    assert (await org_trail(client, auth(runtime, operator), org["id"]))[-3:] == [
        ("member_removed", operator.id, {"user_id": owner.id}),
        ("member_removed", operator.id, {"user_id": member.id}),
        ("organization_deleted", operator.id, {"slug": org["slug"]}),
    ]


async def test_a_membership_change_refuses_to_run_when_no_hooks_are_wired(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = await person(runtime, "owner")
    member = await person(runtime, "member")
    org = await create_org(client, auth(runtime, owner))
    await add_member(client, runtime, auth(runtime, owner), org["id"], member)
    monkeypatch.setattr(orgs, "_hooks", None)

    with pytest.raises(RuntimeError, match="install_hooks"):
        async with transaction(runtime.sessions) as session:
            await orgs.remove_member(session, org["id"], member.id, orgs.Caller(user=owner))

    async with runtime.sessions() as session:
        roles = await session.execute(
            select(Membership.role).where(
                Membership.organization_id == org["id"], Membership.user_id == member.id
            )
        )
        assert roles.scalars().all() == [OrgRole.MEMBER]
