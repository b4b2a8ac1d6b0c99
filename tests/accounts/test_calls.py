"""Tool-call records: reserved with their charge, settled with their outcome, never lost."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.conftest import make_user
from tollgate.accounts import calls, jobs, service
from tollgate.accounts.models import CreditTransaction, McpAccount, ToolCall
from tollgate.app import create_app
from tollgate.core.database import transaction
from tollgate.core.errors import InsufficientCredits
from tollgate.core.runtime import Runtime
from tollgate.core.settings import Settings
from tollgate.identity.models import User


async def _user(runtime: Runtime, **fields: Any) -> User:
    """A user who signs in by JWT only: no password, so no argon2 hash to wait for."""
    return await make_user(runtime, password="", **fields)


async def _new_account(runtime: Runtime) -> int:
    user = await _user(runtime)
    async with transaction(runtime.sessions) as session:
        return (await service.enable(session, user, runtime.settings)).account.id


async def _reserve(runtime: Runtime, account_id: int, cost: int, request_id: str = "") -> str:
    request_id = request_id or uuid.uuid4().hex
    async with transaction(runtime.sessions) as session:
        await calls.reserve_call(
            session,
            account_id,
            request_id=request_id,
            tool_name="docs__search",
            upstream="docs",
            cost=cost,
        )
    return request_id


async def _settle(runtime: Runtime, request_id: str, **outcome: Any) -> bool:
    async with transaction(runtime.sessions) as session:
        return await calls.settle_call(session, calls.CallOutcome(request_id=request_id, **outcome))


async def _call(runtime: Runtime, request_id: str) -> ToolCall:
    async with runtime.sessions() as session:
        call = (
            await session.execute(select(ToolCall).where(ToolCall.request_id == request_id))
        ).scalar_one()
    return call


async def _balance(runtime: Runtime, account_id: int) -> int:
    async with runtime.sessions() as session:
        account = await session.get(McpAccount, account_id)
    assert account is not None
    return account.credits_balance


async def _ledger_types(runtime: Runtime, request_id: str) -> list[tuple[str, int]]:
    async with runtime.sessions() as session:
        rows = await session.execute(
            select(CreditTransaction.transaction_type, CreditTransaction.amount)
            .where(CreditTransaction.reference_id == request_id)
            .order_by(CreditTransaction.id)
        )
        return [(row.transaction_type, row.amount) for row in rows]


async def test_reserve_call_charges_and_records_a_pending_call(runtime: Runtime) -> None:
    account_id = await _new_account(runtime)
    request_id = await _reserve(runtime, account_id, 4)

    call = await _call(runtime, request_id)
    assert call.status == "pending"
    assert call.account_id == account_id
    assert (call.tool_name, call.upstream) == ("docs__search", "docs")
    assert (call.credits_cost, call.credits_charged) == (4, 4)
    assert call.settled_at is None
    assert await _balance(runtime, account_id) == 46
    assert await _ledger_types(runtime, request_id) == [("tool_call", -4)]


async def test_reserving_the_same_request_twice_records_one_call(runtime: Runtime) -> None:
    account_id = await _new_account(runtime)
    await _reserve(runtime, account_id, 4, request_id="req-dup")
    await _reserve(runtime, account_id, 4, request_id="req-dup")
    async with runtime.sessions() as session:
        count = await session.execute(select(func.count()).where(ToolCall.request_id == "req-dup"))
        assert count.scalar_one() == 1
    assert await _balance(runtime, account_id) == 46


async def test_reserve_call_without_enough_credits_records_nothing(runtime: Runtime) -> None:
    account_id = await _new_account(runtime)
    with pytest.raises(InsufficientCredits):
        await _reserve(runtime, account_id, 51, request_id="req-broke")
    async with runtime.sessions() as session:
        count = await session.execute(select(func.count()).select_from(ToolCall))
        assert count.scalar_one() == 0
    assert await _balance(runtime, account_id) == 50


async def test_successful_call_keeps_its_charge(runtime: Runtime) -> None:
    account_id = await _new_account(runtime)
    request_id = await _reserve(runtime, account_id, 3)
    assert await _settle(runtime, request_id, success=True, latency_ms=12.5)

    call = await _call(runtime, request_id)
    assert call.status == "settled"
    assert call.success is True
    assert call.is_backend_error is False
    assert call.credits_charged == 3
    assert call.latency_ms == 12.5
    assert call.settled_at is not None
    assert await _balance(runtime, account_id) == 47
    assert await _ledger_types(runtime, request_id) == [("tool_call", -3)]


async def test_backend_error_is_refunded_and_charges_nothing(runtime: Runtime) -> None:
    account_id = await _new_account(runtime)
    request_id = await _reserve(runtime, account_id, 6)
    assert await _settle(
        runtime, request_id, success=False, is_backend_error=True, error_code="upstream_down"
    )

    call = await _call(runtime, request_id)
    assert call.status == "settled"
    assert call.success is False
    assert call.is_backend_error is True
    assert call.error_code == "upstream_down"
    assert call.credits_cost == 6
    assert call.credits_charged == 0
    assert await _balance(runtime, account_id) == 50
    assert await _ledger_types(runtime, request_id) == [("tool_call", -6), ("refund", 6)]


async def test_tool_error_stays_charged(runtime: Runtime) -> None:
    account_id = await _new_account(runtime)
    request_id = await _reserve(runtime, account_id, 2)
    assert await _settle(runtime, request_id, success=False, error_code="tool_error")

    call = await _call(runtime, request_id)
    assert call.success is False
    assert call.is_backend_error is False
    assert call.credits_charged == 2
    assert await _balance(runtime, account_id) == 48
    assert await _ledger_types(runtime, request_id) == [("tool_call", -2)]


async def test_settling_a_call_twice_is_a_no_op(runtime: Runtime) -> None:
    account_id = await _new_account(runtime)
    request_id = await _reserve(runtime, account_id, 5)
    assert await _settle(runtime, request_id, success=True, latency_ms=1.0) is True
    assert (
        await _settle(runtime, request_id, success=False, is_backend_error=True, error_code="late")
        is False
    )

    call = await _call(runtime, request_id)
    assert call.success is True
    assert call.is_backend_error is False
    assert call.error_code is None
    assert call.credits_charged == 5
    assert await _balance(runtime, account_id) == 45
    assert await _ledger_types(runtime, request_id) == [("tool_call", -5)]


async def test_refunded_call_settled_again_is_not_refunded_twice(runtime: Runtime) -> None:
    account_id = await _new_account(runtime)
    request_id = await _reserve(runtime, account_id, 5)
    outcome = {"success": False, "is_backend_error": True, "error_code": "upstream_down"}
    assert await _settle(runtime, request_id, **outcome) is True
    assert await _settle(runtime, request_id, **outcome) is False
    assert await _balance(runtime, account_id) == 50
    assert await _ledger_types(runtime, request_id) == [("tool_call", -5), ("refund", 5)]


async def test_settling_an_unknown_call_does_nothing(runtime: Runtime) -> None:
    assert await _settle(runtime, "req-unknown", success=True) is False


async def test_settle_abandoned_calls_refunds_every_pending_call(runtime: Runtime) -> None:
    account_id = await _new_account(runtime)
    pending = [await _reserve(runtime, account_id, 2) for _ in range(3)]
    finished = await _reserve(runtime, account_id, 4)
    await _settle(runtime, finished, success=True)
    assert await _balance(runtime, account_id) == 50 - 6 - 4

    assert await jobs.settle_abandoned_calls(runtime.sessions) == 3

    for request_id in pending:
        call = await _call(runtime, request_id)
        assert call.status == "settled"
        assert call.is_backend_error is True
        assert call.error_code == calls.ABANDONED_ERROR_CODE
        assert call.credits_charged == 0
        assert await _ledger_types(runtime, request_id) == [("tool_call", -2), ("refund", 2)]
    assert (await _call(runtime, finished)).credits_charged == 4
    assert await _balance(runtime, account_id) == 46
    assert await jobs.settle_abandoned_calls(runtime.sessions) == 0
    assert await _balance(runtime, account_id) == 46


async def test_starting_the_app_settles_calls_left_pending(
    settings: Settings, runtime: Runtime
) -> None:
    account_id = await _new_account(runtime)
    left_pending = [await _reserve(runtime, account_id, 3) for _ in range(2)]
    assert await _balance(runtime, account_id) == 44

    restarted = create_app(settings, configure_logs=False)
    async with restarted.router.lifespan_context(restarted):
        for request_id in left_pending:
            call = await _call(runtime, request_id)
            assert call.status == "settled"
            assert call.error_code == calls.ABANDONED_ERROR_CODE
            assert call.credits_charged == 0
        assert await _balance(runtime, account_id) == 50
