"""The service catalogue: eight built-ins, and services admins add."""

from __future__ import annotations

import httpx

from tests.broker.factories import (
    INTEGRATIONS,
    MASK,
    SERVICES,
    admin,
    assert_error,
    lease,
    mcp_headers,
    ok,
    person,
    personal_integration,
    secret,
)
from tests.conftest import auth
from tollgate.core.runtime import Runtime

BUILTINS = ["todoist", "openai", "jira", "notion", "sentry", "gmail", "github", "slack"]

LINEAR = {
    "slug": "linear",
    "name": "Linear",
    "description": "Issue tracking",
    "fields": [
        {"name": "api_key", "secret": True},
        {"name": "team", "required": False},
    ],
}


async def test_the_catalogue_lists_the_eight_builtin_services(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    services = ok(await client.get(SERVICES, headers=auth(runtime, await person(runtime))))

    assert [s["slug"] for s in services] == BUILTINS
    assert all(s["builtin"] for s in services)
    by_slug = {s["slug"]: s for s in services}
    jira_fields = {f["name"]: f for f in by_slug["jira"]["fields"]}
    assert jira_fields["api_token"]["secret"] is True
    assert jira_fields["url"]["secret"] is False
    assert jira_fields["cloud"] == {
        "name": "cloud",
        "label": None,
        "type": "boolean",
        "required": False,
        "secret": False,
    }
    for service in services:
        assert any(f["secret"] for f in service["fields"]), service["slug"]


async def test_an_admin_adds_a_service_that_can_then_be_used(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    operator = await admin(runtime)
    user = await person(runtime)

    added = ok(await client.post(SERVICES, json=LINEAR, headers=auth(runtime, operator)), 201)

    assert added["slug"] == "linear"
    assert added["builtin"] is False
    listed = ok(await client.get(SERVICES, headers=auth(runtime, user)))
    assert [s["slug"] for s in listed] == [*BUILTINS, "linear"]
    key = secret("linear")
    created = await personal_integration(
        client, auth(runtime, user), "linear", {"api_key": key, "team": "core"}
    )
    assert created["credentials"] == {"api_key": MASK, "team": "core"}
    leased = await lease(client, await mcp_headers(client, runtime, user), ["linear"])
    assert leased["credentials"] == {"linear": {"api_key": key, "team": "core"}}
    refused = await client.post(
        INTEGRATIONS,
        json={"service": "linear", "credentials": {"team": "core"}},
        headers=auth(runtime, await person(runtime, "second")),
    )
    assert assert_error(refused, 422, "invalid_credentials_fields")["fields"] == ["api_key"]


async def test_a_non_admin_cannot_add_or_remove_services(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    headers = auth(runtime, await person(runtime))

    assert_error(
        await client.post(SERVICES, json=LINEAR, headers=headers), 403, "permission_denied"
    )
    assert_error(await client.delete(f"{SERVICES}/jira", headers=headers), 403, "permission_denied")
    assert [s["slug"] for s in ok(await client.get(SERVICES, headers=headers))] == BUILTINS


async def test_service_slugs_are_unique_and_builtins_stay(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    headers = auth(runtime, await admin(runtime))
    ok(await client.post(SERVICES, json=LINEAR, headers=headers), 201)

    assert_error(await client.post(SERVICES, json=LINEAR, headers=headers), 409, "service_exists")
    assert_error(
        await client.post(SERVICES, json={**LINEAR, "slug": "jira"}, headers=headers),
        409,
        "service_exists",
    )
    assert_error(await client.delete(f"{SERVICES}/jira", headers=headers), 409, "service_builtin")
    ok(await client.delete(f"{SERVICES}/linear", headers=headers), 204)
    assert_error(
        await client.delete(f"{SERVICES}/linear", headers=headers), 404, "service_not_found"
    )


async def test_the_catalogue_needs_a_signed_in_user(client: httpx.AsyncClient) -> None:
    assert (await client.get(SERVICES)).status_code == 401
