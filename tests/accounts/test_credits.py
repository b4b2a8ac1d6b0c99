"""The credits ledger: charges, refunds, idempotency, the never-negative balance, concurrency."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from tests.conftest import make_user
from tollgate.accounts import credits, service
from tollgate.accounts.models import CreditTransaction, McpAccount
from tollgate.core.database import transaction
from tollgate.core.errors import Conflict, Forbidden, InsufficientCredits
from tollgate.core.runtime import Runtime
from tollgate.identity.models import User

CONCURRENCY_TIMEOUT = 60.0
"""Upper bound for a burst of concurrent transactions on a loaded machine."""


async def _user(runtime: Runtime, **fields: Any) -> User:
    """A user who signs in by JWT only: no password, so no argon2 hash to wait for."""
    return await make_user(runtime, password="", **fields)


async def _new_account(runtime: Runtime) -> int:
    """A free-tier account (50 credits) made through the real enable service."""
    user = await _user(runtime)
    async with transaction(runtime.sessions) as session:
        enabled = await service.enable(session, user, runtime.settings)
    return enabled.account.id


async def _account(runtime: Runtime, account_id: int) -> McpAccount:
    async with runtime.sessions() as session:
        account = await session.get(McpAccount, account_id)
    assert account is not None
    return account


async def _ledger(runtime: Runtime, account_id: int) -> list[CreditTransaction]:
    async with runtime.sessions() as session:
        rows = await session.execute(
            select(CreditTransaction)
            .where(CreditTransaction.account_id == account_id)
            .order_by(CreditTransaction.id)
        )
        return list(rows.scalars())


async def _ledger_sum(runtime: Runtime, account_id: int) -> int:
    async with runtime.sessions() as session:
        total = await session.execute(
            select(func.coalesce(func.sum(CreditTransaction.amount), 0)).where(
                CreditTransaction.account_id == account_id
            )
        )
        return int(total.scalar_one())


async def _charge(
    runtime: Runtime, account_id: int, cost: int, request_id: str | None = None
) -> credits.LedgerResult:
    async with transaction(runtime.sessions) as session:
        return await credits.charge(
            session,
            account_id,
            cost,
            request_id=request_id or uuid.uuid4().hex,
            tool_name="files__read",
        )


async def _refund(runtime: Runtime, request_id: str) -> credits.LedgerResult | None:
    async with transaction(runtime.sessions) as session:
        return await credits.refund(session, request_id)


async def test_charge_takes_exactly_the_cost_and_writes_a_tool_call_ledger_row(
    runtime: Runtime,
) -> None:
    account_id = await _new_account(runtime)
    result = await _charge(runtime, account_id, 7, request_id="req-charge")
    assert result == credits.LedgerResult(amount=-7, balance_after=43, replayed=False)

    account = await _account(runtime, account_id)
    assert account.credits_balance == 43
    assert account.total_tool_calls == 1
    assert account.total_credits_used == 7
    entry = (await _ledger(runtime, account_id))[-1]
    assert entry.transaction_type == "tool_call"
    assert (entry.amount, entry.balance_before, entry.balance_after) == (-7, 50, 43)
    assert entry.idempotency_key == "tool_call:req-charge"
    assert entry.reference_type == "tool_call"
    assert entry.reference_id == "req-charge"


async def test_repeated_charge_with_same_request_id_is_deducted_once(runtime: Runtime) -> None:
    account_id = await _new_account(runtime)
    first = await _charge(runtime, account_id, 5, request_id="req-twice")
    again = await _charge(runtime, account_id, 5, request_id="req-twice")
    assert first.replayed is False
    assert again == credits.LedgerResult(amount=-5, balance_after=45, replayed=True)
    account = await _account(runtime, account_id)
    assert account.credits_balance == 45
    assert account.total_tool_calls == 1
    assert len(await _ledger(runtime, account_id)) == 2


async def test_request_id_spent_by_another_account_is_refused_not_replayed(
    runtime: Runtime,
) -> None:
    first, second = await _new_account(runtime), await _new_account(runtime)
    await _charge(runtime, first, 5, request_id="req-shared")

    with pytest.raises(Conflict) as refused:
        await _charge(runtime, second, 5, request_id="req-shared")

    assert refused.value.code == "idempotency_key_reused"
    assert (await _account(runtime, first)).credits_balance == 45
    second_account = await _account(runtime, second)
    assert second_account.credits_balance == 50
    assert second_account.total_tool_calls == 0
    assert len(await _ledger(runtime, second)) == 1


async def test_insufficient_credits_changes_nothing(runtime: Runtime) -> None:
    account_id = await _new_account(runtime)
    await _charge(runtime, account_id, 45)
    before = await _account(runtime, account_id)
    ledger_before = await _ledger(runtime, account_id)

    with pytest.raises(InsufficientCredits) as refused:
        await _charge(runtime, account_id, 6, request_id="req-too-much")
    assert refused.value.extra == {"credits_needed": 6, "credits_balance": 5}

    after = await _account(runtime, account_id)
    assert after.credits_balance == 5
    assert after.total_tool_calls == before.total_tool_calls
    assert after.total_credits_used == before.total_credits_used
    assert [e.id for e in await _ledger(runtime, account_id)] == [e.id for e in ledger_before]
    assert await _refund(runtime, "req-too-much") is None


async def test_charge_that_spends_the_whole_balance_is_allowed(runtime: Runtime) -> None:
    account_id = await _new_account(runtime)
    result = await _charge(runtime, account_id, 50)
    assert result.balance_after == 0
    with pytest.raises(InsufficientCredits):
        await _charge(runtime, account_id, 1)


async def test_disabled_account_cannot_be_charged(runtime: Runtime) -> None:
    account_id = await _new_account(runtime)
    async with transaction(runtime.sessions) as session:
        await session.execute(
            update(McpAccount).where(McpAccount.id == account_id).values(is_active=False)
        )
    with pytest.raises(Forbidden) as refused:
        await _charge(runtime, account_id, 1)
    assert refused.value.code == "account_inactive"
    assert (await _account(runtime, account_id)).credits_balance == 50


async def test_negative_charge_is_refused(runtime: Runtime) -> None:
    account_id = await _new_account(runtime)
    with pytest.raises(ValueError, match="negative"):
        await _charge(runtime, account_id, -5)
    assert (await _account(runtime, account_id)).credits_balance == 50


async def test_refund_returns_exactly_what_was_charged_once(runtime: Runtime) -> None:
    account_id = await _new_account(runtime)
    await _charge(runtime, account_id, 9, request_id="req-refund")

    refunded = await _refund(runtime, "req-refund")
    again = await _refund(runtime, "req-refund")
    assert refunded == credits.LedgerResult(amount=9, balance_after=50, replayed=False)
    assert again == credits.LedgerResult(amount=9, balance_after=50, replayed=True)

    account = await _account(runtime, account_id)
    assert account.credits_balance == 50
    assert account.total_credits_used == 0
    entry = (await _ledger(runtime, account_id))[-1]
    assert entry.transaction_type == "refund"
    assert (entry.amount, entry.balance_before, entry.balance_after) == (9, 41, 50)
    assert entry.idempotency_key == "refund:req-refund"
    assert len(await _ledger(runtime, account_id)) == 3


async def test_refund_of_unknown_request_returns_none(runtime: Runtime) -> None:
    account_id = await _new_account(runtime)
    assert await _refund(runtime, "req-never-charged") is None
    assert len(await _ledger(runtime, account_id)) == 1
    assert (await _account(runtime, account_id)).credits_balance == 50


async def test_ledger_always_sums_to_the_balance(runtime: Runtime) -> None:
    account_id = await _new_account(runtime)

    async def balance_matches_ledger() -> None:
        balance = (await _account(runtime, account_id)).credits_balance
        assert await _ledger_sum(runtime, account_id) == balance

    await balance_matches_ledger()
    await _charge(runtime, account_id, 10, request_id="sum-1")
    await balance_matches_ledger()
    await _charge(runtime, account_id, 15, request_id="sum-2")
    await _refund(runtime, "sum-1")
    await balance_matches_ledger()
    with pytest.raises(InsufficientCredits):
        await _charge(runtime, account_id, 100)
    await balance_matches_ledger()
    async with transaction(runtime.sessions) as session:
        await credits.adjust(
            session, account_id, 12, reason="goodwill", actor="ops", idempotency_key="sum-adj"
        )
    await _charge(runtime, account_id, 15, request_id="sum-2")
    await balance_matches_ledger()
    assert (await _account(runtime, account_id)).credits_balance == 50 - 15 + 12


async def test_database_refuses_a_negative_balance_even_with_a_direct_update(
    runtime: Runtime,
) -> None:
    account_id = await _new_account(runtime)
    with pytest.raises(IntegrityError):
        async with transaction(runtime.sessions) as session:
            await session.execute(
                update(McpAccount).where(McpAccount.id == account_id).values(credits_balance=-1)
            )
    assert (await _account(runtime, account_id)).credits_balance == 50


async def test_200_concurrent_charges_against_50_credits_succeed_exactly_50_times(
    runtime: Runtime,
) -> None:
    account_id = await _new_account(runtime)

    async def one_charge() -> bool:
        try:
            await _charge(runtime, account_id, 1)
        except InsufficientCredits:
            return False
        return True

    async with asyncio.timeout(CONCURRENCY_TIMEOUT):
        outcomes = await asyncio.gather(*(one_charge() for _ in range(200)))

    assert outcomes.count(True) == 50
    assert outcomes.count(False) == 150
    account = await _account(runtime, account_id)
    assert account.credits_balance == 0
    assert account.total_tool_calls == 50
    assert account.total_credits_used == 50
    assert await _ledger_sum(runtime, account_id) == 0
    ledger = await _ledger(runtime, account_id)
    charges = [e for e in ledger if e.transaction_type == "tool_call"]
    assert len(charges) == 50
    assert sorted(e.balance_after for e in charges) == list(range(50))


async def test_concurrent_charges_with_the_same_request_id_deduct_once(
    runtime: Runtime,
) -> None:
    account_id = await _new_account(runtime)

    async with asyncio.timeout(CONCURRENCY_TIMEOUT):
        results = await asyncio.gather(
            *(_charge(runtime, account_id, 4, request_id="req-same") for _ in range(20))
        )

    assert [r.replayed for r in results].count(False) == 1
    assert {(r.amount, r.balance_after) for r in results} == {(-4, 46)}
    account = await _account(runtime, account_id)
    assert account.credits_balance == 46
    assert account.total_tool_calls == 1
    assert account.total_credits_used == 4
    charges = [e for e in await _ledger(runtime, account_id) if e.transaction_type == "tool_call"]
    assert len(charges) == 1
    assert await _ledger_sum(runtime, account_id) == 46


async def test_concurrent_refunds_of_one_call_give_back_once(runtime: Runtime) -> None:
    account_id = await _new_account(runtime)
    await _charge(runtime, account_id, 8, request_id="req-refund-race")

    async with asyncio.timeout(CONCURRENCY_TIMEOUT):
        results = await asyncio.gather(*(_refund(runtime, "req-refund-race") for _ in range(10)))

    assert [r is not None and not r.replayed for r in results].count(True) == 1
    assert (await _account(runtime, account_id)).credits_balance == 50
    assert await _ledger_sum(runtime, account_id) == 50
