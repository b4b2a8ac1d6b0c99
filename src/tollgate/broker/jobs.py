"""Broker jobs: mark leases past their expiry as expired."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tollgate.broker import leases
from tollgate.core.database import transaction


async def mark_expired_leases(sessions: async_sessionmaker[AsyncSession]) -> int:
    """Set ``expired`` on active leases whose time is up (reads derive it anyway)."""
    async with transaction(sessions) as session:
        return await leases.mark_expired(session)
