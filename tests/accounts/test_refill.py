"""The monthly refill: once per account per UTC month, whatever runs it and how often."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select, update

from tests.conftest import make_user
from tollgate.accounts import credits, jobs, service
from tollgate.accounts.models import CreditTransaction, McpAccount
from tollgate.core.clock import month_key
from tollgate.core.database import database_now, transaction
from tollgate.core.runtime import Runtime
from tollgate.core.settings import Settings
from tollgate.identity.models import User

EARLIER_MONTH = "2000-01"
"""A refill period long past: the account is due."""

RUN_TIMEOUT = 30.0
"""Upper bound for refill runs racing each other."""


async def _user(runtime: Runtime, **fields: Any) -> User:
    """A user who signs in by JWT only: no password, so no argon2 hash to wait for."""
    return await make_user(runtime, password="", **fields)


@pytest.fixture
async def rt(settings: Settings) -> AsyncIterator[Runtime]:
    """A runtime without the app, so no scheduled refill runs beside the test's own."""
    runtime = Runtime.build(settings)
    try:
        yield runtime
    finally:
        await runtime.close()


async def _due_account(runtime: Runtime, *, spend: int = 0, extra: int = 0) -> int:
    """A free-tier account enabled (first refilled) in an earlier month.

    Its balance moves only through the ledger, so the ledger still sums to it.
    """
    user = await _user(runtime)
    async with transaction(runtime.sessions) as session:
        account_id = (await service.enable(session, user, runtime.settings)).account.id
        if spend:
            await credits.charge(
                session, account_id, spend, request_id=uuid.uuid4().hex, tool_name="t__x"
            )
        if extra:
            await credits.adjust(
                session, account_id, extra, reason="bonus", actor="ops", idempotency_key="bonus"
            )
        await session.execute(
            update(McpAccount)
            .where(McpAccount.id == account_id)
            .values(refill_period=EARLIER_MONTH)
        )
        await session.execute(
            update(CreditTransaction)
            .where(
                CreditTransaction.account_id == account_id,
                CreditTransaction.transaction_type == "monthly_refill",
            )
            .values(idempotency_key=f"monthly_refill:{account_id}:{EARLIER_MONTH}")
        )
    return account_id


async def _this_month(runtime: Runtime) -> str:
    async with runtime.sessions() as session:
        return month_key(await database_now(session))


async def _account(runtime: Runtime, account_id: int) -> McpAccount:
    async with runtime.sessions() as session:
        account = await session.get(McpAccount, account_id)
    assert account is not None
    return account


async def _refill_rows(runtime: Runtime, account_id: int) -> list[CreditTransaction]:
    async with runtime.sessions() as session:
        rows = await session.execute(
            select(CreditTransaction).where(
                CreditTransaction.account_id == account_id,
                CreditTransaction.transaction_type == "monthly_refill",
            )
        )
        return list(rows.scalars())


async def test_account_refilled_in_an_earlier_month_is_topped_up_to_its_allocation_once(
    rt: Runtime,
) -> None:
    account_id = await _due_account(rt, spend=30)
    month = await _this_month(rt)

    assert await jobs.run_monthly_refill(rt.sessions) == 1

    account = await _account(rt, account_id)
    assert account.credits_balance == 50
    assert account.refill_period == month
    assert account.credits_last_refill is not None
    async with rt.sessions() as session:
        entry = await credits.find_entry(session, f"monthly_refill:{account_id}:{month}")
    assert entry is not None
    assert (entry.amount, entry.balance_before, entry.balance_after) == (30, 20, 50)
    assert entry.created_by == "system"

    assert await jobs.run_monthly_refill(rt.sessions) == 0
    async with transaction(rt.sessions) as session:
        assert await credits.refill_account(session, account_id) is False
    assert (await _account(rt, account_id)).credits_balance == 50
    assert len(await _refill_rows(rt, account_id)) == 2


async def test_balance_above_the_allocation_is_not_reduced_by_the_refill(rt: Runtime) -> None:
    account_id = await _due_account(rt, extra=100)
    month = await _this_month(rt)

    async with transaction(rt.sessions) as session:
        assert await credits.refill_account(session, account_id) is True

    account = await _account(rt, account_id)
    assert account.credits_balance == 150
    assert account.refill_period == month
    async with rt.sessions() as session:
        entry = await credits.find_entry(session, f"monthly_refill:{account_id}:{month}")
    assert entry is not None
    assert (entry.amount, entry.balance_before, entry.balance_after) == (0, 150, 150)


async def test_account_enabled_this_month_is_not_due(rt: Runtime) -> None:
    user = await _user(rt)
    async with transaction(rt.sessions) as session:
        account_id = (await service.enable(session, user, rt.settings)).account.id
        await credits.charge(session, account_id, 10, request_id="r-1", tool_name="t__x")
    assert await jobs.run_monthly_refill(rt.sessions) == 0
    assert (await _account(rt, account_id)).credits_balance == 40


async def test_inactive_accounts_are_skipped_by_the_refill(rt: Runtime) -> None:
    inactive = await _due_account(rt, spend=40)
    active = await _due_account(rt, spend=40)
    async with transaction(rt.sessions) as session:
        await session.execute(
            update(McpAccount).where(McpAccount.id == inactive).values(is_active=False)
        )

    assert await jobs.run_monthly_refill(rt.sessions) == 1
    async with transaction(rt.sessions) as session:
        assert await credits.refill_account(session, inactive) is False

    skipped = await _account(rt, inactive)
    assert skipped.credits_balance == 10
    assert skipped.refill_period == EARLIER_MONTH
    assert len(await _refill_rows(rt, inactive)) == 1
    assert (await _account(rt, active)).credits_balance == 50


async def test_refill_of_an_unknown_account_does_nothing(rt: Runtime) -> None:
    async with transaction(rt.sessions) as session:
        assert await credits.refill_account(session, 999_999) is False


async def test_two_refill_runs_at_once_refill_each_account_once(rt: Runtime) -> None:
    accounts = [await _due_account(rt, spend=5 * (n + 1)) for n in range(4)]
    month = await _this_month(rt)

    async with asyncio.timeout(RUN_TIMEOUT):
        counts = await asyncio.gather(
            jobs.run_monthly_refill(rt.sessions), jobs.run_monthly_refill(rt.sessions)
        )

    assert sum(counts) == len(accounts)
    await _assert_refilled_once(rt, accounts, month)
    assert await jobs.run_monthly_refill(rt.sessions) == 0
    await _assert_refilled_once(rt, accounts, month)


async def test_refill_runs_in_two_processes_refill_each_account_once(
    settings: Settings, rt: Runtime
) -> None:
    accounts = [await _due_account(rt, spend=5 * (n + 1)) for n in range(4)]
    month = await _this_month(rt)
    first, second = Runtime.build(settings), Runtime.build(settings)
    try:
        async with asyncio.timeout(RUN_TIMEOUT):
            counts = await asyncio.gather(
                jobs.run_monthly_refill(first.sessions),
                jobs.run_monthly_refill(second.sessions),
                jobs.run_monthly_refill(first.sessions),
                jobs.run_monthly_refill(second.sessions),
            )
    finally:
        await first.close()
        await second.close()

    assert sum(counts) == len(accounts)
    await _assert_refilled_once(rt, accounts, month)


async def _assert_refilled_once(runtime: Runtime, accounts: list[int], month: str) -> None:
    for account_id in accounts:
        rows = await _refill_rows(runtime, account_id)
        assert sorted(r.idempotency_key for r in rows) == [
            f"monthly_refill:{account_id}:{EARLIER_MONTH}",
            f"monthly_refill:{account_id}:{month}",
        ]
        refill = next(r for r in rows if r.idempotency_key.endswith(month))
        assert refill.balance_after == 50
        assert refill.amount == refill.balance_after - refill.balance_before > 0
        account = await _account(runtime, account_id)
        assert account.credits_balance == 50
        assert account.refill_period == month
