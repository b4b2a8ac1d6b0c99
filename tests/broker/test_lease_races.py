"""On PostgreSQL: renewals racing revocations, and renewals racing each other, in separate
transactions. A revoked lease never ends active and no lease passes ``max_renewals``."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select

from tests.broker.factories import person, personal_integration, todoist
from tests.conftest import auth, require_postgres
from tollgate.broker import audit, leases
from tollgate.broker.models import AuditLog, Lease, LeaseStatus
from tollgate.core.database import database_now, transaction
from tollgate.core.errors import Conflict
from tollgate.core.runtime import Runtime
from tollgate.identity.models import User

RACES = 1000
BATCH = 100
RACE_TIMEOUT_SECONDS = 240
"""A thousand races take seconds on an idle machine; the bound leaves room for a loaded one."""
PARALLEL = 12
"""Races run at once; their two transactions each stay within the pool (10 + 20 overflow)."""


async def create_leases(runtime: Runtime, user: User, count: int, max_renewals: int) -> list[str]:
    settings = runtime.settings.model_copy(update={"lease_max_renewals": max_renewals})
    actor = audit.Actor(user_id=user.id)
    request = leases.LeaseRequest(services=["todoist"], ttl=3600, server_id="race")
    ids: list[str] = []
    for start in range(0, count, BATCH):
        async with transaction(runtime.sessions) as session:
            for _ in range(min(BATCH, count - start)):
                issued = await leases.create(
                    session, runtime.keyring, settings, user, request, token_id=None, actor=actor
                )
                ids.append(issued.lease.id)
    return ids


async def renew(runtime: Runtime, lease_id: str, user: User) -> str:
    try:
        async with transaction(runtime.sessions) as session:
            await leases.renew(session, lease_id, user, audit.Actor(user_id=user.id))
    except Conflict as refused:
        return refused.code
    return "renewed"


async def revoke(runtime: Runtime, lease_id: str, user: User) -> str:
    async with transaction(runtime.sessions) as session:
        lease = await leases.revoke(session, lease_id, user, audit.Actor(user_id=user.id), "race")
    assert lease.revoked_at is not None
    return "revoked"


@pytest.mark.timeout(RACE_TIMEOUT_SECONDS)
async def test_renewals_racing_revocations_never_leave_a_revoked_lease_active(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    require_postgres()
    user = await person(runtime)
    await personal_integration(client, auth(runtime, user), "todoist", todoist())
    lease_ids = await create_leases(runtime, user, RACES, max_renewals=1)
    gate = asyncio.Semaphore(PARALLEL)

    async def race(lease_id: str) -> list[str]:
        async with gate:
            return list(
                await asyncio.gather(
                    renew(runtime, lease_id, user), revoke(runtime, lease_id, user)
                )
            )

    outcomes = await asyncio.gather(*(race(i) for i in lease_ids))

    async with runtime.sessions() as session:
        rows = (await session.execute(select(Lease).where(Lease.id.in_(lease_ids)))).scalars()
        stored = {row.id: row for row in rows}
        now = await database_now(session)
        renewed_audit = (
            await session.execute(
                select(func.count()).select_from(AuditLog).where(AuditLog.action == "lease_renewed")
            )
        ).scalar_one()
    assert len(stored) == RACES
    tally = Counter(result for results in outcomes for result in results)
    assert set(tally) <= {"renewed", "revoked", "lease_revoked"}
    assert tally["revoked"] == RACES
    for lease_id, results in zip(lease_ids, outcomes, strict=True):
        row = stored[lease_id]
        assert row.revoked_at is not None
        assert row.status == LeaseStatus.REVOKED
        assert leases.status_of(row, now) == LeaseStatus.REVOKED
        assert not leases.is_renewable(row, now)
        assert row.renewal_count <= row.max_renewals == 1
        assert row.renewal_count == results.count("renewed")
    assert sum(row.renewal_count for row in stored.values()) == tally["renewed"] == renewed_audit
    assert tally["renewed"] + tally["lease_revoked"] == RACES


async def test_concurrent_renewals_of_one_lease_stop_exactly_at_max_renewals(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    require_postgres()
    user = await person(runtime)
    await personal_integration(client, auth(runtime, user), "todoist", todoist())
    [lease_id] = await create_leases(runtime, user, 1, max_renewals=5)
    gate = asyncio.Semaphore(20)

    async def attempt() -> str:
        async with gate:
            return await renew(runtime, lease_id, user)

    results = Counter(await asyncio.gather(*(attempt() for _ in range(60))))

    assert results == {"renewed": 5, "max_renewals_reached": 55}
    async with runtime.sessions() as session:
        row = await session.get(Lease, lease_id)
        assert row is not None
        assert row.renewal_count == 5
        assert row.status == LeaseStatus.ACTIVE
        assert row.expires_at - row.created_at == timedelta(seconds=row.ttl_seconds * 6)
