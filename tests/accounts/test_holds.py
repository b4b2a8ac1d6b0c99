"""Credit holds: blocks drawn from the balance, calls reserved in memory against them, charges
taken out of the hold with their record, and unused credits given back (when asked, when
idle, at stop, and after the holder died)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import select, update

from tests.conftest import make_user
from tollgate.accounts import calls, credits, service
from tollgate.accounts.holds import CreditHolds, release_dead_holds
from tollgate.accounts.models import CreditHold, McpAccount
from tollgate.core.database import transaction
from tollgate.core.errors import Forbidden, InsufficientCredits
from tollgate.core.instances import heartbeat
from tollgate.core.runtime import Runtime

BLOCK = 100


async def _account(runtime: Runtime, credits_wanted: int) -> int:
    user = await make_user(runtime, password="")
    async with transaction(runtime.sessions) as session:
        account_id = (await service.enable(session, user, runtime.settings)).account.id
        current = (await session.get(McpAccount, account_id)).credits_balance  # type: ignore[union-attr]
        await credits.adjust(
            session,
            account_id,
            credits_wanted - current,
            reason="test balance",
            actor="test",
            idempotency_key=uuid.uuid4().hex,
        )
    return account_id


async def _books(runtime: Runtime, account_id: int) -> tuple[int, int, dict[str, int]]:
    """The account's balance, its ``credits_held``, and the hold rows by process."""
    async with runtime.sessions() as session:
        account = await session.get(McpAccount, account_id, populate_existing=True)
        assert account is not None
        rows = await session.execute(
            select(CreditHold.instance_id, CreditHold.amount).where(
                CreditHold.account_id == account_id
            )
        )
        holds = {instance: amount for instance, amount in rows if amount}
    return account.credits_balance, account.credits_held, holds


@asynccontextmanager
async def _holds(runtime: Runtime, *, hold_seconds: float = 60.0) -> AsyncIterator[CreditHolds]:
    holds = CreditHolds(
        runtime.sessions,
        runtime.cache,
        f"test-{uuid.uuid4().hex[:8]}",
        block=BLOCK,
        hold_seconds=hold_seconds,
    )
    holds.start()
    try:
        yield holds
    finally:
        await holds.stop()


async def _charge(runtime: Runtime, holds: CreditHolds, account_id: int, cost: int) -> None:
    """Record one successful call reserved from ``holds`` and charge it, as the settler does."""
    request_id = uuid.uuid4().hex
    record = calls.CallRecord(
        request_id=request_id,
        account_id=account_id,
        tool_name="docs__search",
        upstream="docs",
        cost=cost,
        instance_id=holds.instance_id,
        outcome=calls.CallOutcome(request_id=request_id, success=True),
    )
    await runtime.writes.run_steps(lambda dialect: calls.record_calls(dialect, [record]))
    holds.settled(account_id, cost, charged=True)


async def test_a_call_draws_a_block_and_its_charge_comes_out_of_the_hold(
    runtime: Runtime,
) -> None:
    account_id = await _account(runtime, 1000)
    async with _holds(runtime) as holds:
        await holds.take(account_id, 3)
        assert holds.held(account_id) == (BLOCK - 3, 3)
        assert await _books(runtime, account_id) == (1000, BLOCK, {holds.instance_id: BLOCK})
        await _charge(runtime, holds, account_id, 3)
        assert holds.held(account_id) == (BLOCK - 3, 0)
        assert await _books(runtime, account_id) == (997, BLOCK - 3, {holds.instance_id: 97})
    assert await _books(runtime, account_id) == (997, 0, {})


async def test_near_the_end_of_a_balance_only_what_a_call_lacks_is_drawn(
    runtime: Runtime,
) -> None:
    account_id = await _account(runtime, 30)
    async with _holds(runtime) as first, _holds(runtime) as second:
        await first.take(account_id, 5)
        await second.take(account_id, 20)
        assert (await _books(runtime, account_id))[1:] == (
            25,
            {first.instance_id: 5, second.instance_id: 20},
        )
        with pytest.raises(InsufficientCredits) as refused:
            await first.take(account_id, 6)  # 5 left, and the others' credits are in use
        assert refused.value.code == "insufficient_credits"


async def test_a_process_that_ran_out_gets_the_credits_another_does_not_use(
    runtime: Runtime,
) -> None:
    account_id = await _account(runtime, 10)
    async with _holds(runtime) as first, _holds(runtime) as second:
        await first.take(account_id, 10)
        first.settled(account_id, 10, charged=False)  # refunded: free again, still held
        assert first.held(account_id) == (10, 0)
        await second.take(account_id, 10)  # asks through the cache; the first gives back
        assert (first.held(account_id), second.held(account_id)) == ((0, 0), (0, 10))
        assert (await _books(runtime, account_id))[1:] == (10, {second.instance_id: 10})


async def test_idle_holds_go_back_to_the_balance(runtime: Runtime) -> None:
    account_id = await _account(runtime, 1000)
    async with _holds(runtime, hold_seconds=0.2) as holds:
        await holds.take(account_id, 1)
        holds.settled(account_id, 1, charged=False)
        for _ in range(50):
            if (await _books(runtime, account_id))[1] == 0:
                break
            await asyncio.sleep(0.05)
        assert await _books(runtime, account_id) == (1000, 0, {})
        assert holds.held(account_id) == (0, 0)


async def test_a_disabled_or_empty_account_is_refused_with_its_code(runtime: Runtime) -> None:
    account_id = await _account(runtime, 10)
    async with _holds(runtime) as holds:
        with pytest.raises(InsufficientCredits):
            await holds.take(account_id, 11)
        async with transaction(runtime.sessions) as session:
            await session.execute(
                update(McpAccount).where(McpAccount.id == account_id).values(is_active=False)
            )
        with pytest.raises(Forbidden) as refused:
            await holds.take(account_id, 1)
        assert refused.value.code == "account_inactive"
    assert await _books(runtime, account_id) == (10, 0, {})


async def test_credits_held_by_a_dead_process_come_back_and_a_live_ones_stay(
    runtime: Runtime,
) -> None:
    account_id = await _account(runtime, 1000)
    dead = CreditHolds(runtime.sessions, runtime.cache, "dead-one", block=BLOCK, hold_seconds=60)
    live = CreditHolds(runtime.sessions, runtime.cache, "live-one", block=BLOCK, hold_seconds=60)
    await dead.take(account_id, 1)  # never stopped: as if killed with its call in flight
    await live.take(account_id, 1)
    await heartbeat(runtime.cache, "live-one")

    released = await release_dead_holds(
        runtime.sessions, runtime.cache, runtime.instance_id, untouched_seconds=0
    )

    assert released == BLOCK
    assert await _books(runtime, account_id) == (1000, BLOCK, {"live-one": BLOCK})
    live.settled(account_id, 1, charged=False)
    await live.stop()
    assert await _books(runtime, account_id) == (1000, 0, {})
