"""``/api/v1/organizations``: members create organizations and manage them by role."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import select

from tests.broker.factories import (
    INVITATIONS,
    ORGS,
    add_member,
    admin,
    assert_error,
    create_org,
    ok,
    person,
)
from tests.conftest import auth
from tollgate.core.runtime import Runtime
from tollgate.identity.models import Membership, OrgRole


async def roles(client: httpx.AsyncClient, headers: dict[str, str], org_id: int) -> dict[int, str]:
    members = ok(await client.get(f"{ORGS}/{org_id}/members", headers=headers))
    return {m["user_id"]: m["role"] for m in members}


async def test_the_creator_becomes_the_owner(client: httpx.AsyncClient, runtime: Runtime) -> None:
    creator = await person(runtime, "creator")
    headers = auth(runtime, creator)

    org = await create_org(client, headers, "Acme")

    assert org["role"] == "owner"
    assert org["name"] == "Acme"
    assert await roles(client, headers, org["id"]) == {creator.id: "owner"}
    mine = ok(await client.get(ORGS, headers=headers))
    assert [(o["id"], o["role"]) for o in mine] == [(org["id"], "owner")]
    assert ok(await client.get(f"{ORGS}/{org['id']}", headers=headers))["role"] == "owner"


async def test_a_taken_slug_is_refused(client: httpx.AsyncClient, runtime: Runtime) -> None:
    headers = auth(runtime, await person(runtime))
    ok(await client.post(ORGS, json={"name": "A", "slug": "same"}, headers=headers), 201)

    again = await client.post(ORGS, json={"name": "B", "slug": "same"}, headers=headers)

    assert_error(again, 409, "organization_exists")


async def test_owners_and_admins_add_members_and_members_do_not(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    helper = await person(runtime, "helper")
    member = await person(runtime, "member")
    newcomer = await person(runtime, "newcomer")
    late = await person(runtime, "late")
    org = await create_org(client, auth(runtime, owner))
    await add_member(client, runtime, auth(runtime, owner), org["id"], helper, "admin")
    await add_member(client, runtime, auth(runtime, helper), org["id"], member, "member")

    refused = await client.post(
        f"{ORGS}/{org['id']}/members", json={"user_id": newcomer.id}, headers=auth(runtime, member)
    )
    by_email = await client.post(
        f"{ORGS}/{org['id']}/members",
        json={"email": late.email, "role": "admin"},
        headers=auth(runtime, helper),
    )

    assert_error(refused, 403, "not_org_admin")
    invitation = ok(by_email, 202)
    assert (invitation["email"], invitation["user_id"]) == (late.email, None)
    ok(await client.post(f"{INVITATIONS}/{invitation['id']}/accept", headers=auth(runtime, late)))
    assert await roles(client, auth(runtime, member), org["id"]) == {
        owner.id: "owner",
        helper.id: "admin",
        member.id: "member",
        late.id: "admin",
    }
    twice = await client.post(
        f"{ORGS}/{org['id']}/members", json={"user_id": member.id}, headers=auth(runtime, owner)
    )
    assert_error(twice, 409, "already_member")


async def test_only_owners_make_owners(client: httpx.AsyncClient, runtime: Runtime) -> None:
    owner = await person(runtime, "owner")
    helper = await person(runtime, "helper")
    member = await person(runtime, "member")
    newcomer = await person(runtime, "newcomer")
    org = await create_org(client, auth(runtime, owner))
    await add_member(client, runtime, auth(runtime, owner), org["id"], helper, "admin")
    await add_member(client, runtime, auth(runtime, owner), org["id"], member)
    path = f"{ORGS}/{org['id']}/members"

    add_owner = await client.post(
        path, json={"user_id": newcomer.id, "role": "owner"}, headers=auth(runtime, helper)
    )
    promote = await client.patch(
        f"{path}/{member.id}", json={"role": "owner"}, headers=auth(runtime, helper)
    )
    demote_owner = await client.patch(
        f"{path}/{owner.id}", json={"role": "member"}, headers=auth(runtime, helper)
    )
    remove_owner = await client.delete(f"{path}/{owner.id}", headers=auth(runtime, helper))

    for refused in (add_owner, promote, demote_owner, remove_owner):
        assert_error(refused, 403, "not_org_owner")
    ok(
        await client.patch(
            f"{path}/{member.id}", json={"role": "admin"}, headers=auth(runtime, helper)
        )
    )
    ok(
        await client.patch(
            f"{path}/{member.id}", json={"role": "owner"}, headers=auth(runtime, owner)
        )
    )
    assert await roles(client, auth(runtime, owner), org["id"]) == {
        owner.id: "owner",
        helper.id: "admin",
        member.id: "owner",
    }


async def test_members_cannot_change_roles(client: httpx.AsyncClient, runtime: Runtime) -> None:
    owner = await person(runtime, "owner")
    member = await person(runtime, "member")
    org = await create_org(client, auth(runtime, owner))
    await add_member(client, runtime, auth(runtime, owner), org["id"], member)

    refused = await client.patch(
        f"{ORGS}/{org['id']}/members/{member.id}",
        json={"role": "admin"},
        headers=auth(runtime, member),
    )

    assert_error(refused, 403, "not_org_admin")
    assert (await roles(client, auth(runtime, owner), org["id"]))[member.id] == "member"


async def test_the_last_owner_can_be_neither_removed_nor_demoted(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    second = await person(runtime, "second")
    org = await create_org(client, auth(runtime, owner))
    path = f"{ORGS}/{org['id']}/members"
    headers = auth(runtime, owner)

    assert_error(await client.delete(f"{path}/{owner.id}", headers=headers), 409, "last_owner")
    assert_error(
        await client.patch(f"{path}/{owner.id}", json={"role": "admin"}, headers=headers),
        409,
        "last_owner",
    )

    await add_member(client, runtime, headers, org["id"], second, "owner")
    ok(await client.patch(f"{path}/{owner.id}", json={"role": "admin"}, headers=headers))
    second_headers = auth(runtime, second)
    assert_error(
        await client.delete(f"{path}/{second.id}", headers=second_headers), 409, "last_owner"
    )
    ok(await client.delete(f"{path}/{owner.id}", headers=second_headers), 204)
    assert await roles(client, second_headers, org["id"]) == {second.id: "owner"}


async def test_outsiders_see_nothing_of_an_organization(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    outsider = await person(runtime, "outsider")
    org = await create_org(client, auth(runtime, owner))
    headers = auth(runtime, outsider)
    base = f"{ORGS}/{org['id']}"

    answers = [
        await client.get(base, headers=headers),
        await client.get(f"{base}/members", headers=headers),
        await client.post(f"{base}/members", json={"user_id": outsider.id}, headers=headers),
        await client.patch(f"{base}/members/{owner.id}", json={"role": "member"}, headers=headers),
        await client.delete(f"{base}/members/{owner.id}", headers=headers),
        await client.get(f"{base}/integrations", headers=headers),
    ]

    for answer in answers:
        assert_error(answer, 404, "organization_not_found")
    assert ok(await client.get(ORGS, headers=headers)) == []
    assert_error(await client.get(f"{ORGS}/999999", headers=headers), 404, "organization_not_found")


async def test_members_list_shows_everyone_with_their_role(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    member = await person(runtime, "member")
    org = await create_org(client, auth(runtime, owner))
    await add_member(client, runtime, auth(runtime, owner), org["id"], member)

    members = ok(await client.get(f"{ORGS}/{org['id']}/members", headers=auth(runtime, member)))

    assert [(m["user_id"], m["username"], m["email"], m["role"]) for m in members] == [
        (owner.id, "owner", owner.email, "owner"),
        (member.id, "member", member.email, "member"),
    ]
    assert all(m["joined_at"] for m in members)


async def test_removing_someone_who_is_not_a_member_is_a_404(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    stranger = await person(runtime, "stranger")
    org = await create_org(client, auth(runtime, owner))

    answer = await client.delete(
        f"{ORGS}/{org['id']}/members/{stranger.id}", headers=auth(runtime, owner)
    )

    assert_error(answer, 404, "member_not_found")


async def test_a_gateway_admin_manages_any_organization(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    member = await person(runtime, "member")
    operator = await admin(runtime)
    org = await create_org(client, auth(runtime, owner))

    await add_member(client, runtime, auth(runtime, operator), org["id"], member)

    assert await roles(client, auth(runtime, operator), org["id"]) == {
        owner.id: "owner",
        member.id: "member",
    }
    assert (
        ok(await client.get(f"{ORGS}/{org['id']}", headers=auth(runtime, operator)))["role"] is None
    )


async def test_membership_changes_are_audited(client: httpx.AsyncClient, runtime: Runtime) -> None:
    owner = await person(runtime, "owner")
    member = await person(runtime, "member")
    operator = await admin(runtime)
    headers = auth(runtime, owner)
    org = await create_org(client, headers)
    await add_member(client, runtime, headers, org["id"], member)
    path = f"{ORGS}/{org['id']}/members/{member.id}"
    ok(await client.patch(path, json={"role": "admin"}, headers=headers))
    ok(await client.delete(path, headers=headers), 204)

    trail = ok(
        await client.get(
            "/api/v1/audit",
            params={"target_type": "organization", "target_id": str(org["id"])},
            headers=auth(runtime, operator),
        )
    )

    assert [(e["action"], e["actor_user_id"]) for e in reversed(trail["entries"])] == [
        ("organization_created", owner.id),
        ("member_invited", owner.id),
        ("invitation_accepted", member.id),
        ("member_role_changed", owner.id),
        ("member_removed", owner.id),
    ]
    invited, accepted, changed, removed = (e["details"] for e in reversed(trail["entries"][:4]))
    assert invited == {
        "invitation_id": accepted["invitation_id"],
        "role": "member",
        "user_id": member.id,
    }
    assert accepted == {
        "invitation_id": invited["invitation_id"],
        "user_id": member.id,
        "role": "member",
    }
    assert changed == {"user_id": member.id, "from": "member", "to": "admin"}
    assert removed == {"user_id": member.id}


RACE_ROUNDS = 4
"""Rounds of two owners demoting (or removing) each other at once; each round can race."""


async def test_two_owners_demoting_each_other_at_once_leave_an_owner(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    first = await person(runtime, "first")
    second = await person(runtime, "second")
    for round_number in range(RACE_ROUNDS):
        org = await create_org(client, auth(runtime, first), f"Race {round_number}")
        await add_member(client, runtime, auth(runtime, first), org["id"], second, "owner")
        path = f"{ORGS}/{org['id']}/members"
        if round_number % 2:
            answers = await asyncio.gather(
                client.delete(f"{path}/{second.id}", headers=auth(runtime, first)),
                client.delete(f"{path}/{first.id}", headers=auth(runtime, second)),
            )
        else:
            answers = await asyncio.gather(
                client.patch(
                    f"{path}/{second.id}", json={"role": "admin"}, headers=auth(runtime, first)
                ),
                client.patch(
                    f"{path}/{first.id}", json={"role": "admin"}, headers=auth(runtime, second)
                ),
            )

        done = [a for a in answers if a.status_code in (200, 204)]
        refused = [a.json()["detail"]["code"] for a in answers if a not in done]
        assert len(done) == 1, [a.text for a in answers]
        # Serialised, the loser is no longer an owner (or no longer a member) when it runs.
        assert refused[0] in ("last_owner", "not_org_owner", "organization_not_found")
        async with runtime.sessions() as session:
            owners = await session.execute(
                select(Membership.user_id).where(
                    Membership.organization_id == org["id"], Membership.role == OrgRole.OWNER
                )
            )
            assert len(owners.all()) == 1
