"""The audit trail (``user_activity_logs``): admins read it, nobody rewrites it, no secrets."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.broker.factories import (
    AUDIT,
    INTEGRATIONS,
    LEASES,
    ME,
    ORGS,
    TOKENS,
    access_token,
    add_member,
    admin,
    assert_error,
    create_org,
    jira,
    lease,
    ok,
    org_integration,
    person,
    personal_integration,
    secret,
    todoist,
)
from tests.conftest import auth, bearer
from tollgate.core.database import transaction
from tollgate.core.runtime import Runtime


async def trail(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> dict[str, Any]:
    page: dict[str, Any] = ok(await client.get(AUDIT, params=params, headers=headers))
    return page


async def full_flow(
    client: httpx.AsyncClient, runtime: Runtime, secrets: list[str]
) -> dict[str, Any]:
    """Every kind of change the audit trail records, with secret values along the way."""
    owner = await person(runtime, "owner")
    member = await person(runtime, "member")
    owner_headers = auth(runtime, owner)
    org = await create_org(client, owner_headers)
    await add_member(client, runtime, owner_headers, org["id"], member)
    ok(
        await client.patch(
            f"{ORGS}/{org['id']}/members/{member.id}", json={"role": "admin"}, headers=owner_headers
        )
    )
    jira_token, todo_token, rotated = secret("jira"), secret("todoist"), secret("rotated")
    secrets += [jira_token, todo_token, rotated]
    shared = await org_integration(client, owner_headers, org["id"], "jira", jira(jira_token))
    todo = await personal_integration(client, auth(runtime, member), "todoist", todoist(todo_token))
    ok(
        await client.patch(
            f"{INTEGRATIONS}/{todo['id']}",
            json={"credentials": {"access_token": rotated}},
            headers=auth(runtime, member),
        )
    )
    token = await access_token(client, auth(runtime, member))
    secrets.append(token["token"])
    headers = bearer(token["token"])
    ok(await client.get(ME, headers=headers))
    created = await lease(client, headers, ["jira", "todoist"])
    ok(await client.post(f"{LEASES}/{created['lease_id']}/renew", headers=headers))
    ok(await client.delete(f"{LEASES}/{created['lease_id']}", headers=headers))
    second = await lease(client, headers, ["jira"])
    ok(
        await client.delete(
            f"{ORGS}/{org['id']}/integrations/{shared['id']}", headers=owner_headers
        ),
        204,
    )
    ok(await client.delete(f"{ORGS}/{org['id']}/members/{member.id}", headers=owner_headers), 204)
    bad = token["token"][:12] + "Z" * 40
    secrets.append(bad)
    assert (await client.get(ME, headers=bearer(bad))).status_code == 401
    ok(await client.delete(f"{TOKENS}/{token['id']}", headers=auth(runtime, member)))
    return {
        "owner": owner,
        "member": member,
        "org": org,
        "lease": created["lease_id"],
        "second": second["lease_id"],
        "todo": todo["id"],
        "token": token,
    }


async def test_only_admins_read_the_audit_trail(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime)
    token = await access_token(client, auth(runtime, user))

    assert_error(await client.get(AUDIT, headers=auth(runtime, user)), 403, "permission_denied")
    assert (await client.get(AUDIT, headers=bearer(token["token"]))).status_code == 401
    assert (await client.get(AUDIT)).status_code == 401
    page = await trail(client, auth(runtime, await admin(runtime)))
    assert page["total"] >= 1


async def test_every_change_is_in_the_trail(client: httpx.AsyncClient, runtime: Runtime) -> None:
    flow = await full_flow(client, runtime, [])
    headers = auth(runtime, await admin(runtime))

    entries = (await trail(client, headers, limit=500))["entries"]

    actions = [e["action"] for e in reversed(entries)]
    assert actions == [
        "organization_created",
        "member_invited",
        "invitation_accepted",
        "member_role_changed",
        "integration_created",
        "integration_created",
        "integration_updated",
        "token_created",
        "mcp_auth_success",
        "lease_created",
        "lease_renewed",
        "lease_revoked",
        "lease_created",
        "lease_revoked",
        "integration_deleted",
        "member_removed",
        "mcp_auth_failed",
        "token_revoked",
    ]
    by_action = {e["action"]: e for e in entries}
    member_id = flow["member"].id
    assert by_action["lease_created"]["actor_user_id"] == member_id
    assert by_action["lease_created"]["actor_token_prefix"] == flow["token"]["token_prefix"]
    assert by_action["lease_renewed"]["target_id"] == flow["lease"]
    assert by_action["lease_renewed"]["details"] == {"renewal_count": 1}
    revoked = [e for e in entries if e["action"] == "lease_revoked"]
    assert {e["target_id"] for e in revoked} == {flow["lease"], flow["second"]}
    for entry in entries:
        assert entry["created_at"]
        if entry["action"] != "mcp_auth_failed":
            assert entry["client_address"] == "127.0.0.1"


async def test_the_trail_filters_and_pages(client: httpx.AsyncClient, runtime: Runtime) -> None:
    flow = await full_flow(client, runtime, [])
    headers = auth(runtime, await admin(runtime))
    member_id = flow["member"].id

    leases_made = await trail(client, headers, action="lease_created")
    by_member = await trail(client, headers, actor_user_id=member_id)
    lease_rows = await trail(client, headers, target_type="lease", target_id=flow["lease"])
    integration_rows = await trail(
        client, headers, target_type="integration", target_id=str(flow["todo"])
    )

    assert leases_made["total"] == 2
    assert {e["action"] for e in leases_made["entries"]} == {"lease_created"}
    assert by_member["total"] == len(by_member["entries"])
    assert {e["actor_user_id"] for e in by_member["entries"]} == {member_id}
    assert [e["action"] for e in reversed(lease_rows["entries"])] == [
        "lease_created",
        "lease_renewed",
        "lease_revoked",
    ]
    assert [e["action"] for e in reversed(integration_rows["entries"])] == [
        "integration_created",
        "integration_updated",
    ]
    everything = await trail(client, headers, limit=500)
    pages = [
        await trail(client, headers, limit=5, offset=offset)
        for offset in range(0, everything["total"], 5)
    ]
    assert all(p["total"] == everything["total"] for p in pages)
    assert [e["id"] for p in pages for e in p["entries"]] == [
        e["id"] for e in everything["entries"]
    ]
    ids = [e["id"] for e in everything["entries"]]
    assert ids == sorted(ids, reverse=True)
    assert (await trail(client, headers, action="nothing-like-this"))["entries"] == []
    assert_error(
        await client.get(AUDIT, params={"limit": 0}, headers=headers), 422, "validation_error"
    )


async def test_no_secret_reaches_the_audit_trail(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    secrets: list[str] = []
    await full_flow(client, runtime, secrets)

    async with runtime.sessions() as session:
        rows = (await session.execute(text("SELECT * FROM user_activity_logs"))).mappings().all()
    dumped = json.dumps([dict(r) for r in rows], default=str)
    via_api = (
        await client.get(AUDIT, params={"limit": 500}, headers=auth(runtime, await admin(runtime)))
    ).text

    assert len(rows) > 10
    for value in secrets:
        assert value not in dumped
        assert value not in via_api


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE user_activity_logs SET action = 'rewritten'",
        "UPDATE user_activity_logs SET details = '{}' WHERE action = 'token_created'",
        "DELETE FROM user_activity_logs",
    ],
)
async def test_the_trail_is_append_only_in_the_database(
    client: httpx.AsyncClient, runtime: Runtime, statement: str
) -> None:
    user = await person(runtime)
    await access_token(client, auth(runtime, user))

    with pytest.raises(DBAPIError, match="append-only"):
        async with transaction(runtime.sessions) as session:
            await session.execute(text(statement))

    async with runtime.sessions() as session:
        rows = (await session.execute(text("SELECT action FROM user_activity_logs"))).all()
    assert [r.action for r in rows] == ["token_created"]
    async with transaction(runtime.sessions) as session:
        await session.execute(
            text("INSERT INTO user_activity_logs (action, details) VALUES ('appended', '{}')")
        )


@pytest.mark.parametrize(
    "moment",
    ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "10000-01-01T00:00:00"],
    ids=["before-year-1-in-utc", "after-year-9999-in-utc", "year-10000"],
)
async def test_audit_time_filter_outside_the_utc_calendar_is_refused(
    client: httpx.AsyncClient, runtime: Runtime, moment: str
) -> None:
    headers = auth(runtime, await admin(runtime))
    for name in ("since", "until"):
        response = await client.get(AUDIT, params={name: moment}, headers=headers)
        assert_error(response, 422, "validation_error")


async def test_audit_time_filter_at_the_ends_of_the_calendar_is_answered(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await full_flow(client, runtime, [])
    headers = auth(runtime, await admin(runtime))
    total = (await trail(client, headers))["total"]
    assert total > 0
    assert (await trail(client, headers, since="0001-01-01T00:00:00Z"))["total"] == total
    assert (await trail(client, headers, until="9999-12-31T23:59:59Z"))["total"] == total
    assert (await trail(client, headers, since="9999-12-31T23:59:59Z"))["total"] == 0
