"""Integrations: personal and organization credentials, validated, masked, kept per owner."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from tests.broker.factories import (
    INTEGRATIONS,
    JIRA,
    MASK,
    ORGS,
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
    secret,
    todoist,
)
from tests.conftest import auth
from tollgate.broker.models import AuditLog
from tollgate.core.runtime import Runtime


async def test_a_personal_integration_goes_through_its_whole_life(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime)
    headers = auth(runtime, user)
    credentials = jira()

    created = await personal_integration(client, headers, "jira", credentials, name="Work Jira")

    assert created["service"] == "jira"
    assert created["name"] == "Work Jira"
    assert created["status"] == "ACTIVE"
    assert created["scope"] == "personal"
    assert created["organization_id"] is None
    assert created["shared_with"] is None
    assert created["credentials"] == {**JIRA, "api_token": MASK}
    path = f"{INTEGRATIONS}/{created['id']}"
    assert ok(await client.get(path, headers=headers)) == created
    assert ok(await client.get(INTEGRATIONS, headers=headers)) == [created]

    renamed = ok(await client.patch(path, json={"name": "Jira"}, headers=headers))
    assert renamed["name"] == "Jira"
    ok(await client.delete(path, headers=headers), 204)
    assert_error(await client.get(path, headers=headers), 404, "integration_not_found")
    assert ok(await client.get(INTEGRATIONS, headers=headers)) == []


async def test_the_name_defaults_to_the_services_name(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    headers = auth(runtime, await person(runtime))

    created = await personal_integration(client, headers, "todoist", todoist())

    assert created["name"] == "Todoist"


async def test_credentials_must_match_the_services_fields(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    headers = auth(runtime, await person(runtime))
    cases = [
        ({**jira(), "password": "x"}, ["password"]),
        ({"url": JIRA["url"], "email": JIRA["email"]}, ["api_token"]),
        ({**jira(), "cloud": "yes"}, ["cloud"]),
        ({**jira(), "url": "ftp://example.com"}, ["url"]),
        ({**jira(), "email": "not-an-email"}, ["email"]),
        ({**jira(), "api_token": 12345}, ["api_token"]),
        ({**jira(), "api_token": "   "}, ["api_token"]),
    ]

    for credentials, fields in cases:
        refused = await client.post(
            INTEGRATIONS, json={"service": "jira", "credentials": credentials}, headers=headers
        )
        assert assert_error(refused, 422, "invalid_credentials_fields")["fields"] == fields

    assert ok(await client.get(INTEGRATIONS, headers=headers)) == []
    unknown = await client.post(
        INTEGRATIONS, json={"service": "nosuch", "credentials": {}}, headers=headers
    )
    assert_error(unknown, 404, "service_not_found")


async def test_responses_mask_secret_fields_and_show_the_others(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    headers = auth(runtime, await person(runtime))
    gmail = {
        "client_id": "client.apps.googleusercontent.com",
        "client_secret": secret("gmail-secret"),
        "refresh_token": secret("gmail-refresh"),
    }

    response = await client.post(
        INTEGRATIONS, json={"service": "gmail", "credentials": gmail}, headers=headers
    )
    listed = await client.get(INTEGRATIONS, headers=headers)

    assert ok(response, 201)["credentials"] == {
        "client_id": "client.apps.googleusercontent.com",
        "client_secret": MASK,
        "refresh_token": MASK,
    }
    for answer in (response, listed):
        assert gmail["client_secret"] not in answer.text
        assert gmail["refresh_token"] not in answer.text


async def test_patching_credentials_merges_them_into_the_stored_ones(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime)
    headers = auth(runtime, user)
    created = await personal_integration(client, headers, "jira", jira())
    new_token = secret("rotated")

    patched = ok(
        await client.patch(
            f"{INTEGRATIONS}/{created['id']}",
            json={"credentials": {"api_token": new_token, "cloud": False}},
            headers=headers,
        )
    )

    assert patched["credentials"] == {**JIRA, "cloud": False, "api_token": MASK}
    leased = await lease(client, await mcp_headers(client, runtime, user), ["jira"])
    assert leased["credentials"]["jira"] == {**JIRA, "cloud": False, "api_token": new_token}
    bad = await client.patch(
        f"{INTEGRATIONS}/{created['id']}",
        json={"credentials": {"unknown": "x"}},
        headers=headers,
    )
    assert_error(bad, 422, "invalid_credentials_fields")


async def test_one_owner_has_one_integration_per_service(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime, "user")
    other = await person(runtime, "other")
    headers = auth(runtime, user)
    await personal_integration(client, headers, "todoist", todoist())

    again = await client.post(
        INTEGRATIONS, json={"service": "todoist", "credentials": todoist()}, headers=headers
    )

    assert_error(again, 409, "integration_exists")
    await personal_integration(client, auth(runtime, other), "todoist", todoist())
    org = await create_org(client, headers)
    await org_integration(client, headers, org["id"], "todoist", todoist())
    org_again = await client.post(
        f"{ORGS}/{org['id']}/integrations",
        json={"service": "todoist", "credentials": todoist()},
        headers=headers,
    )
    assert_error(org_again, 409, "integration_exists")


async def test_nobody_else_reaches_a_personal_integration(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    other = await person(runtime, "other")
    created = await personal_integration(client, auth(runtime, owner), "todoist", todoist())
    path = f"{INTEGRATIONS}/{created['id']}"
    headers = auth(runtime, other)

    assert_error(await client.get(path, headers=headers), 404, "integration_not_found")
    assert_error(
        await client.patch(path, json={"status": "DISABLED"}, headers=headers),
        404,
        "integration_not_found",
    )
    assert_error(await client.delete(path, headers=headers), 404, "integration_not_found")
    assert ok(await client.get(INTEGRATIONS, headers=headers)) == []
    assert ok(await client.get(path, headers=auth(runtime, owner)))["status"] == "ACTIVE"


async def test_personal_integrations_cannot_be_shared(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    headers = auth(runtime, await person(runtime))
    created = await personal_integration(client, headers, "todoist", todoist())

    refused = await client.patch(
        f"{INTEGRATIONS}/{created['id']}", json={"shared_with": "admins_only"}, headers=headers
    )

    assert_error(refused, 400, "not_shareable")


async def test_an_organization_integration_goes_through_its_whole_life(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    headers = auth(runtime, owner)
    org = await create_org(client, headers)
    base = f"{ORGS}/{org['id']}/integrations"

    created = await org_integration(
        client, headers, org["id"], "sentry", {"auth_token": secret("sentry"), "organization": "o"}
    )

    assert created["scope"] == "organization"
    assert created["organization_id"] == org["id"]
    assert created["shared_with"] == "all_members"
    assert created["credentials"] == {"auth_token": MASK, "organization": "o"}
    assert ok(await client.get(base, headers=headers)) == [created]
    path = f"{base}/{created['id']}"
    changed = ok(
        await client.patch(
            path, json={"shared_with": "users", "shared_user_ids": [owner.id]}, headers=headers
        )
    )
    assert (changed["shared_with"], changed["shared_user_ids"]) == ("users", [owner.id])
    ok(await client.delete(path, headers=headers), 204)
    assert_error(await client.get(path, headers=headers), 404, "integration_not_found")
    assert ok(await client.get(base, headers=headers)) == []


async def test_members_see_only_the_organization_integrations_shared_with_them(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    helper = await person(runtime, "helper")
    member = await person(runtime, "member")
    chosen = await person(runtime, "chosen")
    outsider = await person(runtime, "outsider")
    headers = auth(runtime, owner)
    org = await create_org(client, headers)
    for user, role in ((helper, "admin"), (member, "member"), (chosen, "member")):
        await add_member(client, runtime, headers, org["id"], user, role)
    everyone = await org_integration(client, headers, org["id"], "jira", jira())
    admins = await org_integration(
        client, headers, org["id"], "sentry", {"auth_token": "s"}, shared_with="admins_only"
    )
    listed = await org_integration(
        client,
        headers,
        org["id"],
        "slack",
        {"bot_token": "b"},
        shared_with="users",
        shared_user_ids=[chosen.id],
    )
    base = f"{ORGS}/{org['id']}/integrations"

    async def visible(user_headers: dict[str, str]) -> list[str]:
        return [i["service"] for i in ok(await client.get(base, headers=user_headers))]

    assert await visible(auth(runtime, helper)) == ["jira", "sentry", "slack"]
    assert await visible(auth(runtime, member)) == ["jira"]
    assert await visible(auth(runtime, chosen)) == ["jira", "slack"]
    assert_error(
        await client.get(base, headers=auth(runtime, outsider)), 404, "organization_not_found"
    )
    member_headers = auth(runtime, member)
    ok(await client.get(f"{base}/{everyone['id']}", headers=member_headers))
    for hidden in (admins, listed):
        assert_error(
            await client.get(f"{base}/{hidden['id']}", headers=member_headers),
            404,
            "integration_not_found",
        )


async def test_only_owners_and_admins_manage_organization_integrations(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    helper = await person(runtime, "helper")
    member = await person(runtime, "member")
    headers = auth(runtime, owner)
    org = await create_org(client, headers)
    await add_member(client, runtime, headers, org["id"], helper, "admin")
    await add_member(client, runtime, headers, org["id"], member)
    base = f"{ORGS}/{org['id']}/integrations"
    member_headers = auth(runtime, member)
    created = await org_integration(client, auth(runtime, helper), org["id"], "jira", jira())

    refusals = [
        await client.post(
            base,
            json={"service": "notion", "credentials": {"access_token": "n"}},
            headers=member_headers,
        ),
        await client.patch(
            f"{base}/{created['id']}", json={"status": "DISABLED"}, headers=member_headers
        ),
        await client.delete(f"{base}/{created['id']}", headers=member_headers),
    ]

    for refused in refusals:
        assert_error(refused, 403, "not_org_admin")
    assert ok(await client.get(f"{base}/{created['id']}", headers=headers))["status"] == "ACTIVE"


async def test_an_integration_of_another_organization_is_not_reachable_through_this_one(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    headers = auth(runtime, owner)
    mine = await create_org(client, headers, "Mine")
    theirs = await create_org(client, headers, "Theirs")
    created = await org_integration(client, headers, theirs["id"], "jira", jira())

    answer = await client.get(f"{ORGS}/{mine['id']}/integrations/{created['id']}", headers=headers)

    assert_error(answer, 404, "integration_not_found")


async def test_integration_changes_are_audited(client: httpx.AsyncClient, runtime: Runtime) -> None:
    user = await person(runtime)
    headers = auth(runtime, user)
    created = await personal_integration(client, headers, "todoist", todoist())
    path = f"{INTEGRATIONS}/{created['id']}"
    ok(await client.patch(path, json={"status": "DISABLED"}, headers=headers))
    ok(await client.delete(path, headers=headers), 204)

    async with runtime.sessions() as session:
        rows = (
            (
                await session.execute(
                    select(AuditLog)
                    .where(AuditLog.target_type == "integration")
                    .order_by(AuditLog.id)
                )
            )
            .scalars()
            .all()
        )

    assert [r.action for r in rows] == [
        "integration_created",
        "integration_updated",
        "integration_deleted",
    ]
    assert {r.target_id for r in rows} == {str(created["id"])}
    assert {r.actor_user_id for r in rows} == {user.id}
    assert rows[1].details["changed"] == ["status"]
    assert rows[1].details["status"] == "DISABLED"
