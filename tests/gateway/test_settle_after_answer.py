"""``TOLLGATE_SETTLE_BEFORE_ANSWER=false``: answers go out before their records are committed,
and every call is still recorded and charged exactly once, with the books in agreement."""

from __future__ import annotations

import anyio
import pytest
from sqlalchemy import func, select, update

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
from tollgate.accounts.models import McpAccount, ToolCall
from tollgate.core.database import transaction
from tollgate.core.settings import Settings
from tollgate.identity.models import Role

CALLS = 30

LOCKED_SECONDS = 2.0
"""The answer arrives well within this while the database is locked (with records committed
first, the call would wait for the lock)."""


@pytest.fixture
def gateway_settings(settings: Settings) -> Settings:
    """A gateway that answers before it records."""
    return settings.model_copy(update={"settle_before_answer": False})


@pytest.mark.parametrize("mode", ERAS)
async def test_calls_answered_before_their_records_are_each_charged_once(
    upstream: Upstream, gateway: Gateway, mode: str
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=upstream.url, price=2)
    user = await quick_member(gateway, credits=100)
    answers: list[str] = []

    async with connect(gateway, user.key, mode) as client:

        async def one(number: int) -> None:
            answers.append(text_of(await client.call_tool("echo__echo", {"text": str(number)})))

        async with anyio.create_task_group() as group:
            for number in range(CALLS):
                group.start_soon(one, number)
        failed = await client.call_tool("echo__fail", {})

    async def recorded() -> bool:
        return len(await calls_of(gateway.runtime, user.account_id)) == CALLS + 1

    await eventually(recorded, "every answered call is recorded")
    records = await calls_of(gateway.runtime, user.account_id)
    assert sorted(answers, key=int) == [str(n) for n in range(CALLS)]
    assert failed.is_error is True
    assert sorted(r.credits_charged for r in records) == [2] * (CALLS + 1)
    assert len({r.request_id for r in records}) == CALLS + 1
    assert await balance(gateway.runtime, user.account_id) == 100 - 2 * (CALLS + 1)
    assert credits_in_flight(gateway, user.account_id) == 0


@pytest.mark.parametrize("mode", ERAS)
async def test_an_answer_does_not_wait_for_the_database(
    upstream: Upstream, gateway: Gateway, mode: str
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=upstream.url, price=1)
    user = await quick_member(gateway, credits=1000)

    async with connect(gateway, user.key, mode) as client:
        await client.call_tool("echo__echo", {"text": "draws a block"})
        await eventually(lambda: _recorded(gateway, user.account_id, 1), "the first record")
        async with transaction(gateway.runtime.sessions) as session:
            # Holds the account's row (PostgreSQL) or the database's write lock (SQLite):
            # no record can be committed until this transaction ends.
            await session.execute(
                update(McpAccount)
                .where(McpAccount.id == user.account_id)
                .values(credits_tier=McpAccount.credits_tier)
            )
            with anyio.fail_after(LOCKED_SECONDS):
                answered = await client.call_tool("echo__echo", {"text": "at once"})
            assert text_of(answered) == "at once"
            count = select(func.count()).where(ToolCall.account_id == user.account_id)
            assert (await session.execute(count)).scalar_one() == 1

    await eventually(lambda: _recorded(gateway, user.account_id, 2), "the second record")
    assert await balance(gateway.runtime, user.account_id) == 998


async def _recorded(gateway: Gateway, account_id: int, count: int) -> bool:
    return len(await calls_of(gateway.runtime, account_id)) == count
