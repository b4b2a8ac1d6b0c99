"""``tollgate seed-demo``: seed 001's development data, created once.

Two users (``test@mcp-manager.local`` with password ``password``, and the system user
``mcp-server@system.local`` whose token the MCP server uses), two organizations owned by the
test user (Development Team shares Jira and Notion with all members; Client Projects shares
Sentry with admins only), the system user's personal Todoist, OpenAI and Gmail (the Gmail one
in ERROR, so it is not leasable), and three leases, one of which expires in five minutes.
The credential values are generated placeholders, never real secrets.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tollgate.broker import audit, integrations, leases, tokens
from tollgate.broker.models import IntegrationStatus, Lease, SharedWith
from tollgate.core.crypto import Keyring
from tollgate.core.settings import Settings
from tollgate.identity import organizations as orgs
from tollgate.identity import service as users
from tollgate.identity.models import AccessToken, Organization, OrgRole, User

TEST_EMAIL = "test@mcp-manager.local"
TEST_PASSWORD = "password"
SYSTEM_EMAIL = "mcp-server@system.local"
DEMO_SERVER_ID = "mcp-server-1"
DEMO_TOKEN_NAME = "mcp-server-1 (seed-demo)"
TOKEN_LIFETIME = timedelta(days=90)
"""Seed 001 recommends rotating tokens every 90 days."""

SYSTEM = audit.Actor(client_address="seed-demo")


@dataclass
class DemoReport:
    """What a seed-demo run created (empty lists when it had been run before)."""

    created: list[str] = field(default_factory=list)
    token: str | None = None
    token_prefix: str | None = None


def _placeholder(prefix: str) -> str:
    return f"{prefix}demo_{secrets.token_urlsafe(18)}"


async def _user(
    session: AsyncSession,
    report: DemoReport,
    email: str,
    username: str,
    name: str,
    password: str | None,
) -> User:
    existing = await users.find_user_by_email(session, email)
    if existing is not None:
        return existing
    report.created.append(f"user {email}")
    return await users.create_user(
        session, username=username, email=email, password=password, display_name=name
    )


async def _organization(
    session: AsyncSession, report: DemoReport, name: str, slug: str, owner: User
) -> tuple[Organization, bool]:
    found = await orgs.find_by_slug(session, slug)
    if found is not None:
        return found, False
    report.created.append(f"organization {name}")
    return await orgs.create_organization(session, name=name, slug=slug, owner=owner), True


async def _integration(
    session: AsyncSession,
    keyring: Keyring,
    report: DemoReport,
    data: integrations.IntegrationInput,
    *,
    user: User | None = None,
    org: Organization | None = None,
) -> None:
    report.created.append(f"integration {data.service} ({org.name if org else 'personal'})")
    await integrations.create(session, keyring, data, owner_user=user, owner_org=org, actor=SYSTEM)


def _inputs(
    *pairs: tuple[str, dict[str, Any]], **options: Any
) -> list[integrations.IntegrationInput]:
    return [
        integrations.IntegrationInput(service=s, name=None, credentials=c, **options)
        for s, c in pairs
    ]


async def seed(session: AsyncSession, keyring: Keyring, settings: Settings) -> DemoReport:
    """Create the development data that does not exist yet."""
    report = DemoReport()
    test_user = await _user(session, report, TEST_EMAIL, "test", "Test User", TEST_PASSWORD)
    system = await _user(session, report, SYSTEM_EMAIL, "mcp-server", "MCP Server", None)
    dev_team, new_dev = await _organization(
        session, report, "Development Team", "development-team", test_user
    )
    clients, new_clients = await _organization(
        session, report, "Client Projects", "client-projects", test_user
    )
    if new_dev:
        await orgs.enrol(session, dev_team, system.id, OrgRole.MEMBER)
        for data in _inputs(
            (
                "jira",
                {
                    "url": "https://dev-team.atlassian.net",
                    "email": "jira@dev-team.local",
                    "api_token": _placeholder("jira_"),
                    "cloud": True,
                },
            ),
            (
                "notion",
                {"access_token": _placeholder("secret_"), "database_id": secrets.token_hex(16)},
            ),
            shared_with=SharedWith.ALL_MEMBERS,
        ):
            await _integration(session, keyring, report, data, org=dev_team)
    if new_clients:
        await orgs.enrol(session, clients, system.id, OrgRole.ADMIN)
        for data in _inputs(
            ("sentry", {"auth_token": _placeholder("sntrys_"), "organization": "client-projects"}),
            shared_with=SharedWith.ADMINS_ONLY,
        ):
            await _integration(session, keyring, report, data, org=clients)
    if not await integrations.personal(session, system):
        for data in _inputs(
            ("todoist", {"access_token": _placeholder("")}),
            ("openai", {"api_key": _placeholder("sk-")}),
        ):
            await _integration(session, keyring, report, data, user=system)
        gmail = _inputs(
            (
                "gmail",
                {
                    "client_id": "demo-client.apps.googleusercontent.com",
                    "client_secret": _placeholder(""),
                    "refresh_token": _placeholder("1//"),
                },
            ),
            status=IntegrationStatus.ERROR,
        )[0]
        await _integration(session, keyring, report, gmail, user=system)
    await _token(session, report, system)
    await _leases(session, keyring, settings, report, system)
    return report


async def _token(session: AsyncSession, report: DemoReport, system: User) -> None:
    exists = await session.execute(
        select(AccessToken.id).where(
            AccessToken.user_id == system.id, AccessToken.name == DEMO_TOKEN_NAME
        )
    )
    if exists.first() is not None:
        return
    issued = await tokens.issue(
        session,
        system,
        name=DEMO_TOKEN_NAME,
        scopes=["lease"],
        expires_at=datetime.now(UTC) + TOKEN_LIFETIME,
        actor=SYSTEM,
    )
    report.created.append(f"token {issued.token.token_prefix}...")
    report.token, report.token_prefix = issued.full, issued.token.token_prefix


async def _leases(
    session: AsyncSession, keyring: Keyring, settings: Settings, report: DemoReport, system: User
) -> None:
    count = await session.execute(
        select(func.count())
        .select_from(Lease)
        .where(Lease.user_id == system.id, Lease.server_id == DEMO_SERVER_ID)
    )
    if count.scalar_one():
        return
    demo_settings = settings.model_copy(update={"lease_min_ttl_seconds": 1})
    for services, ttl in (
        (["todoist", "jira", "notion"], 3600),
        (["openai", "sentry"], 3600),
        (["todoist"], 300),
    ):
        issued = await leases.create(
            session,
            keyring,
            demo_settings,
            system,
            leases.LeaseRequest(services=services, ttl=ttl, server_id=DEMO_SERVER_ID),
            token_id=None,
            actor=SYSTEM,
        )
        report.created.append(f"lease {issued.lease.id} ({', '.join(services)}, {ttl} s)")
