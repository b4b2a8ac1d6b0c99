"""Joining an organization takes the invitee's consent: invitations they accept or decline."""

from __future__ import annotations

from typing import Any

import httpx

from tests.broker.factories import (
    INVITATIONS,
    LEASES,
    ME,
    ORGS,
    admin,
    assert_error,
    create_org,
    jira,
    lease,
    mcp_headers,
    ok,
    org_integration,
    person,
)
from tests.conftest import auth
from tollgate.broker.leases import resolve
from tollgate.core.runtime import Runtime
from tollgate.identity.models import User

AUDIT = "/api/v1/audit"


async def invite(
    client: httpx.AsyncClient, headers: dict[str, str], org_id: int, **body: Any
) -> httpx.Response:
    return await client.post(f"{ORGS}/{org_id}/members", json=body, headers=headers)


async def member_ids(client: httpx.AsyncClient, headers: dict[str, str], org_id: int) -> set[int]:
    return {m["user_id"] for m in ok(await client.get(f"{ORGS}/{org_id}/members", headers=headers))}


async def pending_of(client: httpx.AsyncClient, runtime: Runtime, user: User) -> list[Any]:
    found: list[Any] = ok(await client.get(INVITATIONS, headers=auth(runtime, user)))
    return found


async def test_pending_invitee_gets_no_organization_credential(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    attacker = await person(runtime, "attacker")
    victim = await person(runtime, "victim")
    headers = auth(runtime, attacker)
    org = await create_org(client, headers, "Trap")
    planted = jira()
    await org_integration(client, headers, org["id"], "jira", planted)

    invitation = ok(await invite(client, headers, org["id"], user_id=victim.id), 202)

    victim_mcp = await mcp_headers(client, runtime, victim)
    refused = await client.post(LEASES, json={"services": ["jira"]}, headers=victim_mcp)
    assert assert_error(refused, 422, "credentials_unavailable")["services"] == ["jira"]
    me = ok(await client.get(ME, headers=victim_mcp))
    assert me["organizations"] == []
    assert "jira" not in me["available_services"]
    async with runtime.sessions() as session:
        assert await resolve(session, victim, ["jira"]) == {}
    assert ok(await client.get(ORGS, headers=auth(runtime, victim))) == []
    assert victim.id not in await member_ids(client, headers, org["id"])

    ok(await client.post(f"{INVITATIONS}/{invitation['id']}/accept", headers=auth(runtime, victim)))
    accepted = await lease(client, victim_mcp, ["jira"])
    assert accepted["credentials"]["jira"] == planted


async def test_declined_invitation_never_makes_a_member(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    invitee = await person(runtime, "invitee")
    headers = auth(runtime, owner)
    org = await create_org(client, headers)
    invitation = ok(await invite(client, headers, org["id"], user_id=invitee.id), 202)
    path = f"{INVITATIONS}/{invitation['id']}"

    ok(await client.post(f"{path}/decline", headers=auth(runtime, invitee)), 204)

    assert_error(
        await client.post(f"{path}/accept", headers=auth(runtime, invitee)),
        404,
        "invitation_not_found",
    )
    assert await pending_of(client, runtime, invitee) == []
    assert await member_ids(client, headers, org["id"]) == {owner.id}


async def test_only_the_invitee_can_answer_an_invitation(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    invitee = await person(runtime, "invitee")
    intruder = await person(runtime, "intruder")
    headers = auth(runtime, owner)
    org = await create_org(client, headers)
    invitation = ok(await invite(client, headers, org["id"], user_id=invitee.id), 202)
    path = f"{INVITATIONS}/{invitation['id']}"

    for who in (intruder, owner):
        for answer in ("accept", "decline"):
            refused = await client.post(f"{path}/{answer}", headers=auth(runtime, who))
            assert_error(refused, 404, "invitation_not_found")
    assert await pending_of(client, runtime, intruder) == []
    assert_error(
        await client.post(f"{INVITATIONS}/999999/accept", headers=auth(runtime, invitee)),
        404,
        "invitation_not_found",
    )

    joined = ok(await client.post(f"{path}/accept", headers=auth(runtime, invitee)))
    assert (joined["id"], joined["role"]) == (org["id"], "member")
    assert await member_ids(client, headers, org["id"]) == {owner.id, invitee.id}


async def test_invitee_sees_invitations_by_id_and_by_email(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    invitee = await person(runtime, "invitee")
    headers = auth(runtime, owner)
    first = await create_org(client, headers, "First")
    second = await create_org(client, headers, "Second")
    ok(await invite(client, headers, first["id"], user_id=invitee.id, role="admin"), 202)
    ok(await invite(client, headers, second["id"], email=invitee.email.upper()), 202)

    pending = await pending_of(client, runtime, invitee)

    assert [(i["organization_name"], i["role"], i["status"]) for i in pending] == [
        ("First", "admin", "pending"),
        ("Second", "member", "pending"),
    ]
    for invitation in pending:
        ok(
            await client.post(
                f"{INVITATIONS}/{invitation['id']}/accept", headers=auth(runtime, invitee)
            )
        )
    mine = ok(await client.get(ORGS, headers=auth(runtime, invitee)))
    assert [(o["name"], o["role"]) for o in mine] == [("First", "admin"), ("Second", "member")]


async def test_inviting_discloses_nothing_about_users_who_are_not_co_members(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    stranger = await person(runtime, "stranger")
    headers = auth(runtime, owner)
    org = await create_org(client, headers)

    by_real_id = await invite(client, headers, org["id"], user_id=stranger.id)
    by_missing_id = await invite(client, headers, org["id"], user_id=987654)
    by_real_email = await invite(client, headers, org["id"], email=stranger.email)
    by_missing_email = await invite(client, headers, org["id"], email="nobody@nowhere.example")

    def shape(response: httpx.Response) -> tuple[int, set[str], Any, Any]:
        body = response.json()
        return response.status_code, set(body), body["user_id"], body["email"]

    assert shape(by_real_id) == (202, shape(by_missing_id)[1], stranger.id, None)
    assert shape(by_missing_id)[::2] == (202, 987654)
    assert shape(by_real_email) == (202, shape(by_missing_email)[1], None, stranger.email)
    assert shape(by_missing_email)[::3] == (202, "nobody@nowhere.example")
    assert stranger.username not in by_real_id.text
    assert stranger.email not in by_real_id.text


async def test_inviting_a_co_member_again_is_a_conflict_and_reinviting_is_one_invitation(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    invitee = await person(runtime, "invitee")
    headers = auth(runtime, owner)
    org = await create_org(client, headers)

    first = ok(await invite(client, headers, org["id"], user_id=invitee.id), 202)
    again = ok(await invite(client, headers, org["id"], user_id=invitee.id, role="admin"), 202)

    assert again["id"] == first["id"]
    assert [i["role"] for i in await pending_of(client, runtime, invitee)] == ["admin"]
    assert_error(await invite(client, headers, org["id"], user_id=owner.id), 409, "already_member")
    assert_error(await invite(client, headers, org["id"], email=owner.email), 409, "already_member")
    assert_error(await invite(client, headers, org["id"]), 400, "member_not_named")


async def test_managers_list_and_cancel_pending_invitations(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    member = await person(runtime, "member")
    invitee = await person(runtime, "invitee")
    outsider = await person(runtime, "outsider")
    headers = auth(runtime, owner)
    org = await create_org(client, headers)
    joining = ok(await invite(client, headers, org["id"], user_id=member.id), 202)
    ok(await client.post(f"{INVITATIONS}/{joining['id']}/accept", headers=auth(runtime, member)))
    invitation = ok(await invite(client, headers, org["id"], user_id=invitee.id), 202)
    listing = f"{ORGS}/{org['id']}/invitations"

    assert [i["id"] for i in ok(await client.get(listing, headers=headers))] == [invitation["id"]]
    assert_error(await client.get(listing, headers=auth(runtime, member)), 403, "not_org_admin")
    assert_error(
        await client.get(listing, headers=auth(runtime, outsider)), 404, "organization_not_found"
    )
    assert_error(
        await client.delete(f"{listing}/{invitation['id']}", headers=auth(runtime, member)),
        403,
        "not_org_admin",
    )

    ok(await client.delete(f"{listing}/{invitation['id']}", headers=headers), 204)

    assert ok(await client.get(listing, headers=headers)) == []
    assert await pending_of(client, runtime, invitee) == []
    assert_error(
        await client.post(
            f"{INVITATIONS}/{invitation['id']}/accept", headers=auth(runtime, invitee)
        ),
        404,
        "invitation_not_found",
    )
    assert_error(
        await client.delete(f"{listing}/{invitation['id']}", headers=headers),
        404,
        "invitation_not_found",
    )


async def test_only_owners_invite_owners(client: httpx.AsyncClient, runtime: Runtime) -> None:
    owner = await person(runtime, "owner")
    helper = await person(runtime, "helper")
    invitee = await person(runtime, "invitee")
    org = await create_org(client, auth(runtime, owner))
    joining = ok(
        await invite(client, auth(runtime, owner), org["id"], user_id=helper.id, role="admin"), 202
    )
    ok(await client.post(f"{INVITATIONS}/{joining['id']}/accept", headers=auth(runtime, helper)))

    refused = await invite(
        client, auth(runtime, helper), org["id"], user_id=invitee.id, role="owner"
    )

    assert_error(refused, 403, "not_org_owner")
    assert await pending_of(client, runtime, invitee) == []


async def test_invitations_are_audited(client: httpx.AsyncClient, runtime: Runtime) -> None:
    owner = await person(runtime, "owner")
    joiner = await person(runtime, "joiner")
    refuser = await person(runtime, "refuser")
    headers = auth(runtime, owner)
    org = await create_org(client, headers)
    joined = ok(await invite(client, headers, org["id"], user_id=joiner.id), 202)
    declined = ok(await invite(client, headers, org["id"], user_id=refuser.id), 202)
    cancelled = ok(await invite(client, headers, org["id"], email="later@example.com"), 202)
    ok(await client.post(f"{INVITATIONS}/{joined['id']}/accept", headers=auth(runtime, joiner)))
    ok(
        await client.post(
            f"{INVITATIONS}/{declined['id']}/decline", headers=auth(runtime, refuser)
        ),
        204,
    )
    ok(
        await client.delete(f"{ORGS}/{org['id']}/invitations/{cancelled['id']}", headers=headers),
        204,
    )

    trail = ok(
        await client.get(
            AUDIT,
            params={"target_type": "organization", "target_id": str(org["id"])},
            headers=auth(runtime, await admin(runtime)),
        )
    )

    assert [(e["action"], e["actor_user_id"], e["details"]) for e in reversed(trail["entries"])][
        1:
    ] == [
        (
            "member_invited",
            owner.id,
            {"invitation_id": joined["id"], "role": "member", "user_id": joiner.id},
        ),
        (
            "member_invited",
            owner.id,
            {"invitation_id": declined["id"], "role": "member", "user_id": refuser.id},
        ),
        (
            "member_invited",
            owner.id,
            {"invitation_id": cancelled["id"], "role": "member", "email": "later@example.com"},
        ),
        (
            "invitation_accepted",
            joiner.id,
            {"invitation_id": joined["id"], "user_id": joiner.id, "role": "member"},
        ),
        (
            "invitation_declined",
            refuser.id,
            {"invitation_id": declined["id"], "user_id": refuser.id},
        ),
        ("invitation_cancelled", owner.id, {"invitation_id": cancelled["id"]}),
    ]
    assert all(e["client_address"] == "127.0.0.1" for e in trail["entries"])


async def test_deleting_a_user_drops_the_invitations_addressed_to_their_id(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    invitee = await person(runtime, "invitee")
    root = await person(runtime, "root", is_superuser=True)
    headers = auth(runtime, owner)
    org = await create_org(client, headers)
    ok(await invite(client, headers, org["id"], user_id=invitee.id), 202)

    deleted = await client.delete(f"/api/v1/admin/users/{invitee.id}", headers=auth(runtime, root))

    assert deleted.status_code == 204, deleted.text
    assert ok(await client.get(f"{ORGS}/{org['id']}/invitations", headers=headers)) == []
