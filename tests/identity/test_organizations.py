"""The organizations admin API: /api/v1/admin/organizations and its members."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.conftest import auth, make_user
from tollgate.core.runtime import Runtime
from tollgate.identity.models import Membership, Role, User

ORGS = "/api/v1/admin/organizations"


async def token_user(runtime: Runtime, **fields: Any) -> User:
    """A stored user without a password, who signs in by token only (no argon2 work)."""
    return await make_user(runtime, password="", **fields)


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["detail"]["code"] == code


async def admin_headers(runtime: Runtime) -> dict[str, str]:
    admin = await token_user(runtime, username="op", role=Role.ADMIN)
    return auth(runtime, admin)


async def create_org(
    client: httpx.AsyncClient, headers: dict[str, str], **body: Any
) -> dict[str, Any]:
    response = await client.post(
        ORGS, json={"name": "Acme", "slug": "acme"} | body, headers=headers
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def members_of(
    client: httpx.AsyncClient, headers: dict[str, str], org_id: int
) -> dict[str, str]:
    response = await client.get(f"{ORGS}/{org_id}/members", headers=headers)
    assert response.status_code == 200, response.text
    return {m["username"]: m["role"] for m in response.json()}


async def membership_rows(runtime: Runtime, org_id: int) -> int:
    async with runtime.sessions() as session:
        query = select(func.count()).select_from(Membership)
        return (
            await session.execute(query.where(Membership.organization_id == org_id))
        ).scalar_one()


async def test_admin_creates_an_organization_with_its_owner(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    headers = await admin_headers(runtime)
    owner = await token_user(runtime, username="olive")
    org = await create_org(client, headers, name="Acme Ltd", owner_id=owner.id)
    assert org["name"] == "Acme Ltd"
    assert org["slug"] == "acme"
    assert org["created_at"]

    members = (await client.get(f"{ORGS}/{org['id']}/members", headers=headers)).json()
    assert len(members) == 1
    assert members[0]["user_id"] == owner.id
    assert members[0]["username"] == "olive"
    assert members[0]["email"] == "olive@example.com"
    assert members[0]["role"] == "owner"
    assert members[0]["joined_at"]

    read = await client.get(f"{ORGS}/{org['id']}", headers=headers)
    assert read.status_code == 200
    assert read.json() == org
    listed = await client.get(ORGS, headers=headers)
    assert listed.json() == [org]


async def test_organization_without_owner_has_no_members(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    headers = await admin_headers(runtime)
    org = await create_org(client, headers)
    assert await members_of(client, headers, org["id"]) == {}


async def test_duplicate_slug_is_a_conflict(client: httpx.AsyncClient, runtime: Runtime) -> None:
    headers = await admin_headers(runtime)
    await create_org(client, headers)
    response = await client.post(ORGS, json={"name": "Other", "slug": "acme"}, headers=headers)
    assert_error(response, 409, "organization_exists")
    assert [o["name"] for o in (await client.get(ORGS, headers=headers)).json()] == ["Acme"]


async def test_unknown_owner_is_not_found_and_creates_nothing(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    headers = await admin_headers(runtime)
    response = await client.post(
        ORGS, json={"name": "Acme", "slug": "acme", "owner_id": 424242}, headers=headers
    )
    assert_error(response, 404, "user_not_found")
    assert (await client.get(ORGS, headers=headers)).json() == []


@pytest.mark.parametrize(
    "body",
    [
        {"name": "Acme", "slug": "Acme"},
        {"name": "Acme", "slug": "-acme"},
        {"name": "Acme", "slug": "a"},
        {"name": "", "slug": "acme"},
        {"name": "Acme", "slug": "acme", "owner_id": 0},
        {"name": "Acme", "slug": "acme", "owner_id": 99999999999},
        {"name": "Acme", "slug": "acme", "plan": "gold"},
    ],
)
async def test_invalid_organization_is_refused(
    client: httpx.AsyncClient, runtime: Runtime, body: dict[str, Any]
) -> None:
    headers = await admin_headers(runtime)
    assert_error(await client.post(ORGS, json=body, headers=headers), 422, "validation_error")


async def test_members_are_added_rechanged_and_removed(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    headers = await admin_headers(runtime)
    owner = await token_user(runtime, username="olive")
    member = await token_user(runtime, username="mike")
    org = await create_org(client, headers, owner_id=owner.id)
    path = f"{ORGS}/{org['id']}/members"

    added = await client.post(path, json={"user_id": member.id}, headers=headers)
    assert added.status_code == 201, added.text
    assert added.json()["role"] == "member"
    assert added.json()["user_id"] == member.id
    assert await members_of(client, headers, org["id"]) == {"olive": "owner", "mike": "member"}

    promoted = await client.post(
        path, json={"user_id": member.id, "role": "admin"}, headers=headers
    )
    assert promoted.status_code == 201, promoted.text
    assert promoted.json()["role"] == "admin"
    assert await members_of(client, headers, org["id"]) == {"olive": "owner", "mike": "admin"}
    assert await membership_rows(runtime, org["id"]) == 2

    removed = await client.delete(f"{path}/{member.id}", headers=headers)
    assert removed.status_code == 204, removed.text
    assert await members_of(client, headers, org["id"]) == {"olive": "owner"}
    assert_error(
        await client.delete(f"{path}/{member.id}", headers=headers), 404, "member_not_found"
    )


async def test_member_routes_report_unknown_organization_and_user(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    headers = await admin_headers(runtime)
    user = await token_user(runtime, username="mike")
    org = await create_org(client, headers)
    missing = org["id"] + 1000
    assert_error(
        await client.get(f"{ORGS}/{missing}", headers=headers), 404, "organization_not_found"
    )
    assert_error(
        await client.get(f"{ORGS}/{missing}/members", headers=headers),
        404,
        "organization_not_found",
    )
    assert_error(
        await client.post(f"{ORGS}/{missing}/members", json={"user_id": user.id}, headers=headers),
        404,
        "organization_not_found",
    )
    assert_error(
        await client.delete(f"{ORGS}/{missing}/members/{user.id}", headers=headers),
        404,
        "organization_not_found",
    )
    assert_error(
        await client.delete(f"{ORGS}/{missing}", headers=headers), 404, "organization_not_found"
    )
    assert_error(
        await client.post(f"{ORGS}/{org['id']}/members", json={"user_id": 424242}, headers=headers),
        404,
        "user_not_found",
    )
    assert await members_of(client, headers, org["id"]) == {}


@pytest.mark.parametrize("bad_id", ["0", "99999999999"])
async def test_bad_organization_ids_are_refused_as_invalid(
    client: httpx.AsyncClient, runtime: Runtime, bad_id: str
) -> None:
    headers = await admin_headers(runtime)
    assert_error(await client.get(f"{ORGS}/{bad_id}", headers=headers), 422, "validation_error")
    assert_error(
        await client.delete(f"{ORGS}/1/members/{bad_id}", headers=headers), 422, "validation_error"
    )


async def test_deleting_an_organization_removes_its_memberships_not_its_users(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    headers = await admin_headers(runtime)
    owner = await token_user(runtime, username="olive")
    member = await token_user(runtime, username="mike")
    org = await create_org(client, headers, owner_id=owner.id)
    await client.post(f"{ORGS}/{org['id']}/members", json={"user_id": member.id}, headers=headers)
    keep = await create_org(client, headers, name="Keep", slug="keep", owner_id=member.id)
    assert await membership_rows(runtime, org["id"]) == 2

    response = await client.delete(f"{ORGS}/{org['id']}", headers=headers)
    assert response.status_code == 204, response.text
    assert_error(
        await client.get(f"{ORGS}/{org['id']}", headers=headers), 404, "organization_not_found"
    )
    assert await membership_rows(runtime, org["id"]) == 0
    assert await members_of(client, headers, keep["id"]) == {"mike": "owner"}
    async with runtime.sessions() as session:
        users = (await session.execute(select(func.count()).select_from(User))).scalar_one()
    assert users == 3

    again = await create_org(client, headers)
    assert again["id"] != org["id"]


async def test_deleting_a_user_removes_their_memberships(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    root = await token_user(runtime, username="root", is_superuser=True)
    headers = auth(runtime, root)
    member = await token_user(runtime, username="mike")
    org = await create_org(client, headers, owner_id=root.id)
    await client.post(f"{ORGS}/{org['id']}/members", json={"user_id": member.id}, headers=headers)
    deleted = await client.delete(f"/api/v1/admin/users/{member.id}", headers=headers)
    assert deleted.status_code == 204, deleted.text
    assert await members_of(client, headers, org["id"]) == {"root": "owner"}


async def test_plain_user_cannot_use_the_organizations_api(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    headers = await admin_headers(runtime)
    org = await create_org(client, headers)
    user = await token_user(runtime, username="plain")
    user_headers = auth(runtime, user)
    attempts: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", ORGS, None),
        ("POST", ORGS, {"name": "Mine", "slug": "mine"}),
        ("GET", f"{ORGS}/{org['id']}", None),
        ("GET", f"{ORGS}/{org['id']}/members", None),
        ("POST", f"{ORGS}/{org['id']}/members", {"user_id": user.id}),
        ("DELETE", f"{ORGS}/{org['id']}/members/{user.id}", None),
        ("DELETE", f"{ORGS}/{org['id']}", None),
    ]
    for method, path, body in attempts:
        response = await client.request(method, path, json=body, headers=user_headers)
        assert_error(response, 403, "permission_denied")
    assert [o["slug"] for o in (await client.get(ORGS, headers=headers)).json()] == ["acme"]
    assert await members_of(client, headers, org["id"]) == {}
    assert (await client.get(ORGS)).status_code == 401


async def test_admin_adding_and_removing_members_directly_is_audited(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    admin = await token_user(runtime, username="op", role=Role.ADMIN)
    headers = auth(runtime, admin)
    member = await token_user(runtime, username="mike")
    org = await create_org(client, headers)
    path = f"{ORGS}/{org['id']}/members"

    added = await client.post(path, json={"user_id": member.id}, headers=headers)
    promoted = await client.post(
        path, json={"user_id": member.id, "role": "admin"}, headers=headers
    )
    removed = await client.delete(f"{path}/{member.id}", headers=headers)

    assert [added.status_code, promoted.status_code, removed.status_code] == [201, 201, 204]
    trail = await client.get(
        "/api/v1/audit",
        params={"target_type": "organization", "target_id": str(org["id"])},
        headers=headers,
    )
    assert trail.status_code == 200, trail.text
    entries = [(e["action"], e["actor_user_id"], e["details"]) for e in trail.json()["entries"]]
    assert list(reversed(entries)) == [
        ("organization_created", admin.id, {"slug": "acme"}),
        ("member_added", admin.id, {"user_id": member.id, "role": "member"}),
        ("member_role_changed", admin.id, {"user_id": member.id, "from": "member", "to": "admin"}),
        ("member_removed", admin.id, {"user_id": member.id}),
    ]
