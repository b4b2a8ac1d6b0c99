"""``tollgate seed-demo``: seed 001's development data, created once, its token printed once."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import func, select

from tests.broker.factories import LEASES, ME, ok
from tests.conftest import bearer
from tests.live import server_env
from tollgate.broker.models import Integration, Lease
from tollgate.core.runtime import Runtime
from tollgate.core.settings import Settings
from tollgate.identity.models import AccessToken, Membership, Organization, User

TOLLGATE = str(Path(sys.executable).with_name("tollgate"))
TOKEN_LINE = re.compile(r"^MCP_TOKEN=(mcpt_[A-Za-z0-9_-]+)$", re.MULTILINE)


async def seed_demo(settings: Settings) -> str:
    """Run ``tollgate seed-demo`` off the event loop; returns its standard output."""
    done = await asyncio.to_thread(
        subprocess.run,
        [TOLLGATE, "seed-demo"],
        env=server_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def counts(runtime: Runtime) -> dict[str, int]:
    async with runtime.sessions() as session:
        return {
            model.__tablename__: (
                await session.execute(select(func.count()).select_from(model))
            ).scalar_one()
            for model in (User, Organization, Membership, Integration, AccessToken, Lease)
        }


async def test_seed_demo_creates_the_seeds_development_data_once(
    client: httpx.AsyncClient, runtime: Runtime, settings: Settings
) -> None:
    first = await seed_demo(settings)

    tokens = TOKEN_LINE.findall(first)
    assert len(tokens) == 1
    assert first.count(tokens[0]) == 1
    assert "user test@mcp-manager.local" in first
    assert "user mcp-server@system.local" in first
    after_first = await counts(runtime)
    assert after_first == {
        "users": 2,
        "organizations": 2,
        "memberships": 4,
        "integrations": 6,
        "access_tokens": 1,
        "leases": 3,
    }
    await check_token(client, tokens[0])
    await check_data(client, runtime)

    second = await seed_demo(settings)

    assert "MCP_TOKEN" not in second
    assert TOKEN_LINE.search(second) is None
    assert "nothing to do" in second
    assert await counts(runtime) == {**after_first, "leases": 4}


async def check_token(client: httpx.AsyncClient, token: str) -> None:
    """The printed token sees the seed's services and leases them."""
    me = ok(await client.get(ME, headers=bearer(token)))
    created = ok(
        await client.post(
            LEASES,
            json={"services": ["todoist", "jira", "notion"], "ttl": 3600, "server_id": "mcp-1"},
            headers=bearer(token),
        ),
        201,
    )

    assert me["email"] == "mcp-server@system.local"
    assert me["available_services"] == ["jira", "notion", "openai", "sentry", "todoist"]
    assert [(o["name"], o["role"]) for o in me["organizations"]] == [
        ("Development Team", "member"),
        ("Client Projects", "admin"),
    ]
    assert created["credential_scope"] == "mixed"
    [from_org] = created["included_org_credentials"]
    assert from_org["services"] == ["jira", "notion"]
    assert created["credentials"]["jira"]["url"] == "https://dev-team.atlassian.net"
    assert created["credentials"]["jira"]["cloud"] is True
    assert created["credentials"]["todoist"]["access_token"]


async def check_data(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """The organizations, their sharing rules, the personal integrations and the leases."""
    async with runtime.sessions() as session:
        orgs = {o.name: o.id for o in (await session.execute(select(Organization))).scalars()}
        integrations = (await session.execute(select(Integration))).scalars().all()
        leases = (
            (await session.execute(select(Lease).where(Lease.server_id == "mcp-server-1")))
            .scalars()
            .all()
        )
        users = {u.email: u for u in (await session.execute(select(User))).scalars()}

    shared = {
        (i.organization_id, i.service, i.shared_with)
        for i in integrations
        if i.organization_id is not None
    }
    assert shared == {
        (orgs["Development Team"], "jira", "all_members"),
        (orgs["Development Team"], "notion", "all_members"),
        (orgs["Client Projects"], "sentry", "admins_only"),
    }
    system = users["mcp-server@system.local"]
    personal = {i.service: i.status for i in integrations if i.user_id is not None}
    assert personal == {"todoist": "ACTIVE", "openai": "ACTIVE", "gmail": "ERROR"}
    assert {i.user_id for i in integrations if i.user_id is not None} == {system.id}
    assert len(leases) == 3
    assert {lease.user_id for lease in leases} == {system.id}
    assert {lease.status for lease in leases} == {"active"}
    lifetimes = sorted(lease.expires_at - lease.created_at for lease in leases)
    assert lifetimes == [timedelta(minutes=5), timedelta(hours=1), timedelta(hours=1)]
    assert users["test@mcp-manager.local"].display_name == "Test User"
    login = await client.post(
        "/api/v1/auth/login",
        data={"username": "test@mcp-manager.local", "password": "password"},
    )
    assert ok(login)["access_token"]
