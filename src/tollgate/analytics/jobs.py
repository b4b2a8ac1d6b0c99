"""Analytics jobs: roll raw events past the retention up into hours, then prune them."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tollgate.analytics import service
from tollgate.core.database import transaction

logger = logging.getLogger(__name__)


async def roll_up_and_prune(sessions: async_sessionmaker[AsyncSession], retention_days: int) -> int:
    """Keep hourly rollups of events older than ``retention_days`` and delete those events."""
    async with transaction(sessions) as session:
        pruned = await service.roll_up_and_prune(session, retention_days)
    if pruned:
        logger.info("rolled up and pruned %d analytics events", pruned)
    return pruned
