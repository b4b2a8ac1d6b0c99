"""Analytics fixtures: admins and users without password hashing, a webhook secret in the
settings, signed requests, and the gateway fixtures (a real upstream and a real Tollgate)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, insert, select

from tests.conftest import token_for
from tests.gateway.conftest import gateway, gateway_settings, upstream
from tollgate.analytics.ingest_auth import sign
from tollgate.analytics.models import UsageEvent
from tollgate.core.database import Base, transaction
from tollgate.core.runtime import Runtime
from tollgate.core.settings import Settings
from tollgate.identity import service as users
from tollgate.identity.models import Role

__all__ = ["gateway", "gateway_settings", "upstream"]

WEBHOOK_SECRET = "analytics-webhook-secret-for-tests"
"""The ``MCP_WEBHOOK_SECRET`` the analytics tests' app is configured with."""


EVENT_TEMPLATE: dict[str, Any] = {
    "session_id": "sess-1",
    "event_type": "tool_call",
    "tool_name": "sequential_thinking",
    "service": "thinker",
    "response_time_ms": 12.5,
    "success": True,
    "metadata": {"step": 1},
}
"""A usage event as seed 004's MCP server hook posts it."""


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The base settings with signed ingestion configured."""
    return settings.model_copy(update={"mcp_webhook_secret": WEBHOOK_SECRET})


@dataclass(frozen=True)
class Person:
    """A stored user and the headers of their JWT."""

    id: int
    email: str
    jwt: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.jwt}"}


async def person(runtime: Runtime, role: str = Role.USER) -> Person:
    """A user who signs in by token only (no password to hash: argon2 is slow here)."""
    name = f"{role}-{uuid.uuid4().hex[:8]}"
    async with transaction(runtime.sessions) as session:
        user = await users.create_user(
            session,
            username=name,
            email=f"{name}@example.com",
            password=None,
            role=role,
            is_superuser=False,
        )
    return Person(user.id, user.email, token_for(runtime, user))


@pytest.fixture
async def admin(runtime: Runtime) -> Person:
    """An admin (not a superuser): holds ``analytics.read`` and ``analytics.write``."""
    return await person(runtime, Role.ADMIN)


def ago(**delta: float) -> datetime:
    """An aware UTC moment this long before now."""
    return datetime.now(UTC) - timedelta(**delta)


def iso(moment: datetime) -> str:
    """``moment`` as JSON and query strings carry it."""
    return moment.isoformat()


def signed_headers(
    body: bytes, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None
) -> dict[str, str]:
    """The headers of a request signed as an external MCP server signs it."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": "application/json",
        "X-Tollgate-Timestamp": stamp,
        "X-Tollgate-Signature": sign(secret, stamp, body),
    }


async def rows(runtime: Runtime, model: type[Base]) -> int:
    """How many rows ``model``'s table holds now."""
    async with runtime.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def insert_events(runtime: Runtime, *events: dict[str, Any]) -> None:
    """Store usage events as the recorder does (with credits, which ingestion never sets)."""
    defaults = {"event_type": "tool_call", "success": True, "credits": 0, "event_metadata": {}}
    async with transaction(runtime.sessions) as session:
        await session.execute(insert(UsageEvent), [{**defaults, **e} for e in events])


async def post_ok(
    client: httpx.AsyncClient, path: str, body: Any, headers: dict[str, str]
) -> dict[str, Any]:
    """POST an analytics record, expecting it stored."""
    response = await client.post(f"/api/v1/analytics/{path}", json=body, headers=headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def get_ok(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], **params: Any
) -> Any:
    """GET an analytics resource, expecting 200."""
    query = {k: v for k, v in params.items() if v is not None}
    response = await client.get(f"/api/v1/analytics/{path}", params=query, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()
