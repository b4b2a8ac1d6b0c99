"""Account jobs: the monthly refill, and the recovery of what a crashed process left: its
credit holds, and pending calls recorded by earlier versions."""

from __future__ import annotations

import logging

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tollgate.accounts import calls, credits
from tollgate.accounts.holds import release_dead_holds
from tollgate.core.cache import Cache
from tollgate.core.database import transaction
from tollgate.core.instances import is_alive
from tollgate.core.runtime import Runtime

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


async def settle_abandoned_calls(
    sessions: async_sessionmaker[AsyncSession], cache: Cache | None = None
) -> int:
    """Refund and close the calls that processes no longer alive left pending.

    Without a cache to ask, every pending call is taken as abandoned (a single process
    calls this at start, before it makes calls of its own).
    """
    async with transaction(sessions) as session:
        keep: set[str] = set()
        if cache is not None:
            for instance_id in await calls.pending_instances(session):
                if instance_id is not None and await is_alive(cache, instance_id):
                    keep.add(instance_id)
        settled = await calls.settle_abandoned_calls(session, keep)
    if settled:
        logger.warning("settled %d tool calls left pending by a previous process", settled)
    return settled


async def recover_abandoned_work(runtime: Runtime) -> None:
    """Give back the credits dead processes held, and settle the calls they left pending."""
    await release_dead_holds(runtime.sessions, runtime.cache, runtime.instance_id)
    await settle_abandoned_calls(runtime.sessions, runtime.cache)
