"""Account jobs: the monthly refill and the settlement of calls a crash left pending."""

from __future__ import annotations

import logging

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tollgate.accounts import calls, credits
from tollgate.core.database import transaction

logger = logging.getLogger(__name__)


async def run_monthly_refill(sessions: async_sessionmaker[AsyncSession]) -> int:
    """Refill every account due this month, each in its own short transaction.

    Safe to run at any time from any number of processes: an account is refilled once per
    UTC month. Returns how many accounts this run refilled.
    """
    async with sessions() as session:
        due = await credits.accounts_due_for_refill(session)
    refilled = 0
    for account_id in due:
        try:
            async with transaction(sessions) as session:
                refilled += await credits.refill_account(session, account_id)
        except IntegrityError:
            logger.info("account %s was refilled by another process", account_id)
    if refilled:
        logger.info("monthly refill topped up %d accounts", refilled)
    return refilled


async def settle_abandoned_calls(sessions: async_sessionmaker[AsyncSession]) -> int:
    """At start-up: refund and close every call a previous process left pending."""
    async with transaction(sessions) as session:
        settled = await calls.settle_abandoned_calls(session)
    if settled:
        logger.warning("settled %d tool calls left pending by a previous process", settled)
    return settled
