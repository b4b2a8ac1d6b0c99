"""Small factories for the broker tests: users, organizations, integrations, tokens, leases.

Everything goes through the HTTP API (or the broker's own services), never around them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import update

from tests.conftest import auth, bearer, make_user
from tollgate.app import create_app
from tollgate.broker.models import Lease
from tollgate.core.database import transaction
from tollgate.core.runtime import Runtime
from tollgate.core.settings import Settings
from tollgate.identity.models import Role, User

ORGS = "/api/v1/organizations"
INVITATIONS = "/api/v1/invitations"
ADMIN_ORGS = "/api/v1/admin/organizations"
INTEGRATIONS = "/api/v1/integrations"
TOKENS = "/api/v1/tokens"
LEASES = "/api/mcp/credentials/lease"
ME = "/api/mcp/me"
AUDIT = "/api/v1/audit"
SERVICES = "/api/v1/services"
MASK = "********"


def secret(label: str) -> str:
    """A unique secret value that a test can search for anywhere."""
    return f"{label}-plain-{uuid.uuid4().hex}"


async def person(
    runtime: Runtime, name: str | None = None, *, display_name: str | None = None, **fields: Any
) -> User:
    """A stored user who signs in by JWT only (no password hashing work)."""
    user = await make_user(runtime, username=name, password="", **fields)
    if display_name is not None:
        async with transaction(runtime.sessions) as session:
            await session.execute(
                update(User).where(User.id == user.id).values(display_name=display_name)
            )
        user.display_name = display_name
    return user


async def admin(runtime: Runtime, name: str = "operator") -> User:
    """A stored gateway admin."""
    return await person(runtime, name, role=Role.ADMIN)


def ok(response: httpx.Response, status: int = 200) -> Any:
    """The JSON body of a response that must have ``status``."""
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Check a Tollgate error answer; returns its ``detail``."""
    assert response.status_code == status, response.text
    detail: dict[str, Any] = response.json()["detail"]
    assert detail["code"] == code, detail
    return detail


async def create_org(
    client: httpx.AsyncClient, headers: dict[str, str], name: str = "Development Team"
) -> dict[str, Any]:
    """An organization created by the caller (its owner)."""
    slug = f"{name.lower().replace(' ', '-')}-{uuid.uuid4().hex[:6]}"
    body: dict[str, Any] = ok(
        await client.post(ORGS, json={"name": name, "slug": slug}, headers=headers), 201
    )
    return body


async def add_member(
    client: httpx.AsyncClient,
    runtime: Runtime,
    headers: dict[str, str],
    org_id: int,
    user: User,
    role: str = "member",
) -> None:
    """Invite ``user`` as the organization's owner or admin would, and accept as ``user``."""
    invitation = ok(
        await client.post(
            f"{ORGS}/{org_id}/members", json={"user_id": user.id, "role": role}, headers=headers
        ),
        202,
    )
    ok(await client.post(f"{INVITATIONS}/{invitation['id']}/accept", headers=auth(runtime, user)))


async def personal_integration(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    service: str,
    credentials: dict[str, Any],
    **body: Any,
) -> dict[str, Any]:
    """A personal integration of the caller."""
    created: dict[str, Any] = ok(
        await client.post(
            INTEGRATIONS,
            json={"service": service, "credentials": credentials, **body},
            headers=headers,
        ),
        201,
    )
    return created


async def org_integration(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    org_id: int,
    service: str,
    credentials: dict[str, Any],
    **body: Any,
) -> dict[str, Any]:
    """An integration of the organization (``shared_with`` etc. in ``body``)."""
    created: dict[str, Any] = ok(
        await client.post(
            f"{ORGS}/{org_id}/integrations",
            json={"service": service, "credentials": credentials, **body},
            headers=headers,
        ),
        201,
    )
    return created


async def access_token(
    client: httpx.AsyncClient, headers: dict[str, str], scopes: list[str] | None = None
) -> dict[str, Any]:
    """A new access token of the caller (``token`` holds the full value)."""
    body: dict[str, Any] = {"name": f"server-{uuid.uuid4().hex[:6]}"}
    if scopes is not None:
        body["scopes"] = scopes
    created: dict[str, Any] = ok(await client.post(TOKENS, json=body, headers=headers), 201)
    return created


async def mcp_headers(client: httpx.AsyncClient, runtime: Runtime, user: User) -> dict[str, str]:
    """The Authorization header of a fresh ``lease`` access token of ``user``."""
    token = await access_token(client, auth(runtime, user))
    return bearer(token["token"])


async def lease(
    client: httpx.AsyncClient, headers: dict[str, str], services: list[str], **body: Any
) -> dict[str, Any]:
    """A new lease (201 required)."""
    created: dict[str, Any] = ok(
        await client.post(LEASES, json={"services": services, **body}, headers=headers), 201
    )
    return created


async def lease_details(
    client: httpx.AsyncClient, headers: dict[str, str], lease_id: str
) -> dict[str, Any]:
    """GET of a lease (200 required)."""
    details: dict[str, Any] = ok(await client.get(f"{LEASES}/{lease_id}", headers=headers))
    return details


async def lease_row(runtime: Runtime, lease_id: str) -> Lease:
    """The stored lease row."""
    async with runtime.sessions() as session:
        row = await session.get(Lease, lease_id)
        assert row is not None
        return row


def moment(value: str) -> datetime:
    """A timestamp of a response."""
    return datetime.fromisoformat(value)


JIRA = {"url": "https://dev-team.atlassian.net", "email": "jira@dev-team.local", "cloud": True}


def jira(token: str | None = None) -> dict[str, Any]:
    """Jira credentials as the seed shows them, with a unique API token."""
    return {**JIRA, "api_token": token or secret("jira")}


def notion(token: str | None = None) -> dict[str, Any]:
    """Notion credentials with a unique access token."""
    return {"access_token": token or secret("notion"), "database_id": "db-1234"}


def todoist(token: str | None = None) -> dict[str, Any]:
    """Todoist credentials with a unique access token."""
    return {"access_token": token or secret("todoist")}


@asynccontextmanager
async def running(
    settings: Settings, **overrides: Any
) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    """An app on ``settings`` changed by ``overrides``, with a client talking to it."""
    changed = settings.model_copy(update=overrides)
    application = create_app(changed, configure_logs=False)
    async with application.router.lifespan_context(application):
        runtime = application.state.runtime
        assert isinstance(runtime, Runtime)
        transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield runtime, http


@asynccontextmanager
async def bare_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """Database, cache and keyring of ``settings`` without an app (so no background jobs)."""
    runtime = Runtime.build(settings)
    try:
        yield runtime
    finally:
        await runtime.close()
