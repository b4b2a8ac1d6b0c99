"""A tool call the client cancels is settled at once: recorded ``cancelled``, not charged,
and reported to analytics; and a call that answered is settled before its answer arrives."""

from __future__ import annotations

import anyio
import pytest
from sqlalchemy import func, select

from tests.gateway.conftest import (
    ERAS,
    Gateway,
    Upstream,
    balance,
    calls_of,
    connect,
    credits_in_flight,
    quick_member,
    register_upstream,
    text_of,
)
from tests.waiting import eventually
from tollgate.accounts.models import CallStatus, CreditTransaction
from tollgate.analytics.models import UsageEvent
from tollgate.core.runtime import Runtime
from tollgate.identity.models import Role

PRICE = 5
SLOW_SECONDS = 60
"""Far longer than the test: the call is still running upstream when it is cancelled."""

SETTLE_DEADLINE_SECONDS = 10.0
"""A cancelled call is settled as soon as the gateway sees the cancellation: well within this."""


async def ledger_of(runtime: Runtime, account_id: int) -> tuple[list[tuple[str, int]], int]:
    """The account's ledger rows (key, amount), oldest first, and their sum."""
    async with runtime.sessions() as session:
        rows = (
            await session.execute(
                select(CreditTransaction.idempotency_key, CreditTransaction.amount)
                .where(CreditTransaction.account_id == account_id)
                .order_by(CreditTransaction.id)
            )
        ).all()
        total = (
            await session.execute(
                select(func.coalesce(func.sum(CreditTransaction.amount), 0)).where(
                    CreditTransaction.account_id == account_id
                )
            )
        ).scalar_one()
    return [(row.idempotency_key, row.amount) for row in rows], int(total)


async def usage_events_of(runtime: Runtime, request_id: str) -> list[UsageEvent]:
    """The analytics usage events recorded for one call."""
    async with runtime.sessions() as session:
        events = (await session.execute(select(UsageEvent))).scalars().all()
    return [e for e in events if (e.event_metadata or {}).get("request_id") == request_id]


@pytest.mark.parametrize("mode", ERAS)
async def test_cancelled_call_is_recorded_cancelled_refunded_and_reported_at_once(
    upstream: Upstream, gateway: Gateway, mode: str
) -> None:
    runtime = gateway.runtime
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=upstream.url, price=PRICE)
    user = await quick_member(gateway, credits=20)

    async with connect(gateway, user.key, mode) as client:
        async with anyio.create_task_group() as group:
            group.start_soon(client.call_tool, "echo__slow", {"seconds": SLOW_SECONDS})

            async def reserved() -> bool:
                return credits_in_flight(gateway, user.account_id) == PRICE

            await eventually(reserved, "the slow call's credits are reserved")
            assert await calls_of(runtime, user.account_id) == []
            group.cancel_scope.cancel()  # the SDK sends notifications/cancelled (or hangs up)

        async def settled() -> bool:
            return len(await calls_of(runtime, user.account_id)) == 1

        await eventually(settled, "the cancelled call is settled", SETTLE_DEADLINE_SECONDS)
        assert text_of(await client.call_tool("echo__echo", {"text": "still here"})) == (
            "still here"
        )

    [cancelled, echoed] = await calls_of(runtime, user.account_id)
    assert cancelled.status == CallStatus.CANCELLED
    assert (cancelled.success, cancelled.is_backend_error, cancelled.error_code) == (
        False,
        False,
        "cancelled",
    )
    assert cancelled.credits_charged == 0
    assert cancelled.settled_at is not None
    assert echoed.status == CallStatus.SETTLED
    entries, total = await ledger_of(runtime, user.account_id)
    assert [e for e in entries if e[0].endswith(cancelled.request_id)] == []
    assert credits_in_flight(gateway, user.account_id) == 0
    assert total == await balance(runtime, user.account_id) == 20 - PRICE

    async def reported() -> bool:
        return len(await usage_events_of(runtime, cancelled.request_id)) == 1

    await eventually(reported, "analytics records the cancelled call", SETTLE_DEADLINE_SECONDS)
    [event] = await usage_events_of(runtime, cancelled.request_id)
    assert (event.tool_name, event.success, event.error_message, event.credits) == (
        "echo__slow",
        False,
        "cancelled",
        0,
    )


@pytest.mark.parametrize("mode", ERAS)
async def test_answered_call_is_settled_before_its_answer_arrives(
    upstream: Upstream, gateway: Gateway, mode: str
) -> None:
    runtime = gateway.runtime
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=upstream.url, price=PRICE)
    user = await quick_member(gateway, credits=20)

    async with connect(gateway, user.key, mode) as client:
        ok = await client.call_tool("echo__echo", {"text": "hi"})
        [record] = await calls_of(runtime, user.account_id)  # read at once, no waiting
        failed = await client.call_tool("echo__fail", {})
        records = await calls_of(runtime, user.account_id)

    assert text_of(ok) == "hi"
    assert failed.is_error is True
    assert (record.status, record.success, record.credits_charged) == (
        CallStatus.SETTLED,
        True,
        PRICE,
    )
    assert [(r.status, r.error_code) for r in records] == [
        (CallStatus.SETTLED, None),
        (CallStatus.SETTLED, "tool_error"),
    ]
