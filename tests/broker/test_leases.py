"""Seed 001's leases: create, read, renew, revoke, and who may see what."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select

from tests.broker.factories import (
    LEASES,
    add_member,
    admin,
    assert_error,
    create_org,
    jira,
    lease,
    lease_details,
    lease_row,
    mcp_headers,
    moment,
    notion,
    ok,
    org_integration,
    person,
    personal_integration,
    running,
    todoist,
)
from tests.conftest import auth
from tests.waiting import eventually
from tollgate.broker import jobs
from tollgate.broker.models import Lease
from tollgate.core.database import database_now
from tollgate.core.runtime import Runtime
from tollgate.core.settings import Settings


async def test_a_personal_lease_carries_the_users_own_credentials(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime)
    headers = auth(runtime, user)
    todo, openai = todoist(), {"api_key": "sk-abc", "organization": "org-1"}
    await personal_integration(client, headers, "todoist", todo)
    await personal_integration(client, headers, "openai", openai)
    token = await mcp_headers(client, runtime, user)
    started = datetime.now(UTC)

    created = await lease(client, token, ["todoist", "openai"], ttl=600, server_id="mcp-1")

    assert created["lease_id"].startswith("lse_")
    assert len(created["lease_id"]) >= 4 + 20
    assert created["credentials"] == {"todoist": todo, "openai": openai}
    assert created["credential_scope"] == "personal"
    assert created["included_org_credentials"] == []
    assert created["renewable"] is True
    assert created["missing_services"] == []
    lifetime = moment(created["expires_at"]) - started
    assert timedelta(seconds=595) < lifetime < timedelta(seconds=605)
    details = await lease_details(client, token, created["lease_id"])
    assert details["status"] == "active"
    assert details["server_id"] == "mcp-1"
    assert sorted(details["services"]) == ["openai", "todoist"]


async def test_a_lease_lasts_an_hour_unless_asked_otherwise(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime)
    await personal_integration(client, auth(runtime, user), "todoist", todoist())
    token = await mcp_headers(client, runtime, user)

    created = await lease(client, token, ["todoist"])

    details = await lease_details(client, token, created["lease_id"])
    assert moment(details["expires_at"]) - moment(details["created_at"]) == timedelta(hours=1)
    assert details["max_renewals"] == 24
    assert details["renewal_count"] == 0


async def test_an_organization_lease_names_the_organization_it_came_from(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    member = await person(runtime, "member")
    owner_headers = auth(runtime, owner)
    org = await create_org(client, owner_headers)
    await add_member(client, runtime, owner_headers, org["id"], member)
    jira_credentials, notion_credentials = jira(), notion()
    await org_integration(client, owner_headers, org["id"], "jira", jira_credentials)
    await org_integration(client, owner_headers, org["id"], "notion", notion_credentials)

    created = await lease(client, await mcp_headers(client, runtime, member), ["notion", "jira"])

    assert created["credentials"] == {"jira": jira_credentials, "notion": notion_credentials}
    assert created["credential_scope"] == "organization"
    assert created["included_org_credentials"] == [
        {"organization_id": org["id"], "services": ["jira", "notion"]}
    ]


async def test_a_mixed_lease_has_the_seeds_shape(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    server = await person(runtime, "server")
    owner_headers = auth(runtime, owner)
    org = await create_org(client, owner_headers)
    await add_member(client, runtime, owner_headers, org["id"], server)
    todo, jira_credentials, notion_credentials = todoist(), jira(), notion()
    await personal_integration(client, auth(runtime, server), "todoist", todo)
    await org_integration(client, owner_headers, org["id"], "jira", jira_credentials)
    await org_integration(client, owner_headers, org["id"], "notion", notion_credentials)

    created = await lease(
        client,
        await mcp_headers(client, runtime, server),
        ["todoist", "jira", "notion"],
        ttl=3600,
        server_id="mcp-server-1",
    )

    assert set(created) == {
        "lease_id",
        "credentials",
        "expires_at",
        "renewable",
        "credential_scope",
        "included_org_credentials",
        "missing_services",
    }
    assert created["credentials"] == {
        "todoist": todo,
        "jira": jira_credentials,
        "notion": notion_credentials,
    }
    assert created["credentials"]["jira"]["cloud"] is True
    assert created["credential_scope"] == "mixed"
    assert created["included_org_credentials"] == [
        {"organization_id": org["id"], "services": ["jira", "notion"]}
    ]
    assert created["renewable"] is True


async def test_renewal_extends_by_exactly_the_original_ttl(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime)
    await personal_integration(client, auth(runtime, user), "todoist", todoist())
    token = await mcp_headers(client, runtime, user)
    created = await lease(client, token, ["todoist"], ttl=120)

    first = ok(await client.post(f"{LEASES}/{created['lease_id']}/renew", headers=token))
    second = ok(await client.post(f"{LEASES}/{created['lease_id']}/renew", headers=token))

    assert set(first) == {"lease_id", "expires_at", "renewal_count", "last_renewed_at"}
    assert first["lease_id"] == created["lease_id"]
    assert moment(first["expires_at"]) - moment(created["expires_at"]) == timedelta(seconds=120)
    assert moment(second["expires_at"]) - moment(first["expires_at"]) == timedelta(seconds=120)
    assert (first["renewal_count"], second["renewal_count"]) == (1, 2)
    assert first["last_renewed_at"] is not None
    assert moment(second["last_renewed_at"]) >= moment(first["last_renewed_at"])
    assert moment(first["last_renewed_at"]) < moment(created["expires_at"])
    details = await lease_details(client, token, created["lease_id"])
    assert details["renewal_count"] == 2
    assert details["expires_at"] == second["expires_at"]
    row = await lease_row(runtime, created["lease_id"])
    assert row.last_renewed_at == moment(second["last_renewed_at"])


async def test_renewals_stop_at_max_renewals(settings: Settings) -> None:
    async with running(settings, lease_max_renewals=2) as (runtime, client):
        user = await person(runtime)
        await personal_integration(client, auth(runtime, user), "todoist", todoist())
        token = await mcp_headers(client, runtime, user)
        created = await lease(client, token, ["todoist"])
        renew = f"{LEASES}/{created['lease_id']}/renew"

        counts = [ok(await client.post(renew, headers=token))["renewal_count"] for _ in range(2)]
        refused = await client.post(renew, headers=token)

        assert counts == [1, 2]
        assert_error(refused, 409, "max_renewals_reached")
        details = await lease_details(client, token, created["lease_id"])
        assert details["renewal_count"] == 2
        assert details["renewable"] is False
        assert details["status"] == "active"


async def test_renewal_never_passes_the_maximum_lifetime(settings: Settings) -> None:
    async with running(settings, lease_max_lifetime_seconds=150) as (runtime, client):
        user = await person(runtime)
        await personal_integration(client, auth(runtime, user), "todoist", todoist())
        token = await mcp_headers(client, runtime, user)
        created = await lease(client, token, ["todoist"], ttl=60)
        renew = f"{LEASES}/{created['lease_id']}/renew"

        first = ok(await client.post(renew, headers=token))
        second = ok(await client.post(renew, headers=token))
        refused = await client.post(renew, headers=token)

        details = await lease_details(client, token, created["lease_id"])
        born = moment(details["created_at"])
        assert moment(first["expires_at"]) - born == timedelta(seconds=120)
        assert moment(second["expires_at"]) - born == timedelta(seconds=150)
        assert_error(refused, 409, "max_lifetime_reached")
        assert details["expires_at"] == second["expires_at"]
        assert details["renewal_count"] == 2
        assert details["renewable"] is False


async def expired(client: httpx.AsyncClient, headers: dict[str, str], lease_id: str) -> Any:
    details = await lease_details(client, headers, lease_id)
    return details if details["status"] == "expired" else None


async def test_an_expired_lease_cannot_be_renewed(settings: Settings) -> None:
    async with running(settings, lease_min_ttl_seconds=1) as (runtime, client):
        user = await person(runtime)
        await personal_integration(client, auth(runtime, user), "todoist", todoist())
        token = await mcp_headers(client, runtime, user)
        created = await lease(client, token, ["todoist"], ttl=1)
        assert (await lease_details(client, token, created["lease_id"]))["status"] == "active"

        details = await eventually(lambda: expired(client, token, created["lease_id"]))
        refused = await client.post(f"{LEASES}/{created['lease_id']}/renew", headers=token)

        assert details["renewable"] is False
        assert_error(refused, 409, "lease_expired")
        assert (await lease_row(runtime, created["lease_id"])).renewal_count == 0


async def test_the_expiry_job_marks_leases_past_their_time(settings: Settings) -> None:
    async with running(settings, lease_min_ttl_seconds=1) as (runtime, client):
        user = await person(runtime)
        await personal_integration(client, auth(runtime, user), "todoist", todoist())
        token = await mcp_headers(client, runtime, user)
        short = await lease(client, token, ["todoist"], ttl=1)
        long = await lease(client, token, ["todoist"], ttl=3600)
        deadline = moment(short["expires_at"])

        async def past_deadline() -> bool:
            async with runtime.sessions() as session:
                return await database_now(session) > deadline

        await eventually(past_deadline)
        assert (await lease_row(runtime, short["lease_id"])).status == "active"

        marked = await jobs.mark_expired_leases(runtime.sessions)

        assert marked == 1
        assert (await lease_row(runtime, short["lease_id"])).status == "expired"
        assert (await lease_row(runtime, long["lease_id"])).status == "active"
        assert (await lease_details(client, token, short["lease_id"]))["status"] == "expired"
        assert await jobs.mark_expired_leases(runtime.sessions) == 0


async def test_a_revoked_lease_cannot_be_renewed(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime)
    await personal_integration(client, auth(runtime, user), "todoist", todoist())
    token = await mcp_headers(client, runtime, user)
    created = await lease(client, token, ["todoist"])

    revoked = ok(
        await client.request(
            "DELETE",
            f"{LEASES}/{created['lease_id']}",
            json={"reason": "Server shutdown"},
            headers=token,
        )
    )
    refused = await client.post(f"{LEASES}/{created['lease_id']}/renew", headers=token)

    assert revoked["message"] == "Lease revoked successfully"
    assert revoked["lease_id"] == created["lease_id"]
    assert_error(refused, 409, "lease_revoked")
    details = await lease_details(client, token, created["lease_id"])
    assert details["status"] == "revoked"
    assert details["renewable"] is False
    assert details["revoked_at"] == revoked["revoked_at"]
    row = await lease_row(runtime, created["lease_id"])
    assert row.revoke_reason == "Server shutdown"
    assert row.renewal_count == 0


async def test_revoking_twice_returns_the_first_revocation_time(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime)
    await personal_integration(client, auth(runtime, user), "todoist", todoist())
    token = await mcp_headers(client, runtime, user)
    created = await lease(client, token, ["todoist"])

    first = ok(await client.delete(f"{LEASES}/{created['lease_id']}", headers=token))
    second = ok(
        await client.request(
            "DELETE", f"{LEASES}/{created['lease_id']}", json={"reason": "again"}, headers=token
        )
    )

    assert second == first
    assert (await lease_row(runtime, created["lease_id"])).revoke_reason == "revoked by owner"


async def test_lease_details_never_carry_credentials(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime)
    todo = todoist()
    await personal_integration(client, auth(runtime, user), "todoist", todo)
    token = await mcp_headers(client, runtime, user)
    created = await lease(client, token, ["todoist"])

    answers = [
        await client.get(f"{LEASES}/{created['lease_id']}", headers=token),
        await client.post(f"{LEASES}/{created['lease_id']}/renew", headers=token),
        await client.delete(f"{LEASES}/{created['lease_id']}", headers=token),
    ]

    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert "credentials" not in answer.json()
        assert todo["access_token"] not in answer.text
    assert set(answers[0].json()) >= {
        "lease_id",
        "status",
        "services",
        "expires_at",
        "renewable",
        "renewal_count",
        "credential_scope",
    }


async def test_only_the_owner_or_an_admin_sees_a_lease(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    other = await person(runtime, "other")
    operator = await admin(runtime)
    await personal_integration(client, auth(runtime, owner), "todoist", todoist())
    token = await mcp_headers(client, runtime, owner)
    created = await lease(client, token, ["todoist"])
    path = f"{LEASES}/{created['lease_id']}"
    stranger = await mcp_headers(client, runtime, other)

    assert_error(await client.get(path, headers=stranger), 404, "lease_not_found")
    assert_error(await client.post(f"{path}/renew", headers=stranger), 404, "lease_not_found")
    assert_error(await client.delete(path, headers=stranger), 404, "lease_not_found")
    assert_error(await client.get(path, headers=auth(runtime, other)), 404, "lease_not_found")
    assert (await lease_details(client, token, created["lease_id"]))["status"] == "active"
    unknown = f"{LEASES}/lse_doesnotexist"
    assert_error(await client.get(unknown, headers=token), 404, "lease_not_found")
    assert_error(await client.post(f"{unknown}/renew", headers=token), 404, "lease_not_found")
    assert_error(await client.delete(unknown, headers=token), 404, "lease_not_found")

    seen = ok(await client.get(path, headers=auth(runtime, operator)))
    assert seen["lease_id"] == created["lease_id"]
    assert_error(
        await client.post(f"{path}/renew", headers=auth(runtime, operator)),
        404,
        "lease_not_found",
    )
    ok(await client.delete(path, headers=auth(runtime, operator)))
    assert (await lease_details(client, token, created["lease_id"]))["status"] == "revoked"


async def test_services_without_credentials_are_listed_and_no_lease_is_made(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime)
    await personal_integration(client, auth(runtime, user), "todoist", todoist())
    token = await mcp_headers(client, runtime, user)

    refused = await client.post(
        LEASES, json={"services": ["jira", "todoist", "slack"]}, headers=token
    )

    detail = assert_error(refused, 422, "credentials_unavailable")
    assert detail["services"] == ["jira", "slack"]
    async with runtime.sessions() as session:
        assert (await session.execute(select(Lease))).first() is None


async def test_allow_partial_leases_what_is_available_and_names_the_rest(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime)
    todo = todoist()
    await personal_integration(client, auth(runtime, user), "todoist", todo)
    token = await mcp_headers(client, runtime, user)

    created = await lease(client, token, ["jira", "todoist"], allow_partial=True)
    nothing = await client.post(
        LEASES, json={"services": ["jira"], "allow_partial": True}, headers=token
    )

    assert created["credentials"] == {"todoist": todo}
    assert created["missing_services"] == ["jira"]
    assert created["credential_scope"] == "personal"
    assert (await lease_details(client, token, created["lease_id"]))["services"] == ["todoist"]
    assert assert_error(nothing, 422, "credentials_unavailable")["services"] == ["jira"]


async def test_a_ttl_outside_the_bounds_is_refused(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime)
    await personal_integration(client, auth(runtime, user), "todoist", todoist())
    token = await mcp_headers(client, runtime, user)

    for ttl in (59, 86401):
        refused = await client.post(
            LEASES, json={"services": ["todoist"], "ttl": ttl}, headers=token
        )
        assert_error(refused, 422, "invalid_ttl")
    for ttl in (60, 86400):
        await lease(client, token, ["todoist"], ttl=ttl)


async def test_malformed_lease_requests_are_refused(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime)
    token = await mcp_headers(client, runtime, user)

    bodies: list[dict[str, Any]] = [
        {"services": []},
        {"services": ["Todoist!"]},
        {"services": ["x"], "extra": 1},
    ]
    for body in bodies:
        assert_error(await client.post(LEASES, json=body, headers=token), 422, "validation_error")
    assert_error(await client.get(f"{LEASES}/not-a-lease", headers=token), 422, "validation_error")
