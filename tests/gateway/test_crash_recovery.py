"""Killing the server in the middle of tool calls and starting it again keeps the rule: every
call whose result a client received is recorded and charged exactly once, a call that never
answered is neither recorded nor charged, and the ledger sums to the balance. The credits the
dead process held for its calls in flight go back to the balance when the next process finds
it dead."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from sqlalchemy import select, update

from tests.gateway.conftest import (
    Gateway,
    Upstream,
    balance,
    calls_of,
    mcp_client_at,
    quick_member,
    register_upstream,
    text_of,
    tool_names,
)
from tests.gateway.upstream import SLOW_CALLS_RUNNING
from tests.live import TOLLGATE, free_port, server_env, wait_healthy
from tests.waiting import eventually
from tollgate.accounts.holds import DEAD_HOLD_SECONDS
from tollgate.accounts.models import CallStatus, CreditHold, CreditTransaction, McpAccount, ToolCall
from tollgate.core.runtime import Runtime
from tollgate.core.settings import Settings
from tollgate.identity.models import Role

CALLS_PER_ERA = 10
FAST_CALLS_PER_ERA = 10
"""Calls answered just before the kill: their outcomes must already be durable."""
SLOW_SECONDS = 3
"""Long enough that every call is still running upstream when the server is killed."""

Process = subprocess.Popen[bytes]

IN_FLIGHT_SECONDS = 20.0
"""Every call is reserved and running upstream well within this."""


@contextmanager
def server_process(settings: Settings, log_path: Path) -> Iterator[tuple[str, Process]]:
    """``tollgate serve`` on ``settings``' stores; yields its URL and the process (to kill)."""
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [TOLLGATE, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=server_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, process, log_path)
            yield url, process
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
            process.wait(timeout=10)


@asynccontextmanager
async def started(settings: Settings, log_path: Path) -> AsyncIterator[tuple[str, Process]]:
    """:func:`server_process` from async code."""
    manager = server_process(settings, log_path)
    served = await asyncio.to_thread(manager.__enter__)
    try:
        yield served
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)


async def slow_calls(url: str, key: str, mode: str, outcomes: list[Any]) -> None:
    """``CALLS_PER_ERA`` concurrent slow calls on one client, until the server dies."""

    async def one(client: Any) -> None:
        try:
            outcomes.append(await client.call_tool("echo__slow", {"seconds": SLOW_SECONDS}))
        except Exception as exc:
            outcomes.append(exc)

    try:
        async with (
            mcp_client_at(f"{url}/mcp", key, mode) as client,
            anyio.create_task_group() as group,
        ):
            for _ in range(CALLS_PER_ERA):
                group.start_soon(one, client)
    except Exception as exc:  # the client itself breaks when its server dies
        outcomes.append(exc)


async def fast_calls(url: str, key: str, mode: str, answered: list[str]) -> None:
    """``FAST_CALLS_PER_ERA`` concurrent echo calls on one client; the texts answered."""

    async def one(client: Any, number: int) -> None:
        text = f"{mode}-{number}"
        result = await client.call_tool("echo__echo", {"text": text})
        assert text_of(result) == text
        answered.append(text)

    async with (
        mcp_client_at(f"{url}/mcp", key, mode) as client,
        anyio.create_task_group() as group,
    ):
        for number in range(FAST_CALLS_PER_ERA):
            group.start_soon(one, client, number)


async def ledger_of(runtime: Runtime, account_id: int) -> tuple[dict[str, int], int]:
    """The account's ledger: amount by idempotency key, and the sum of every row."""
    async with runtime.sessions() as session:
        rows = (
            await session.execute(
                select(CreditTransaction.idempotency_key, CreditTransaction.amount).where(
                    CreditTransaction.account_id == account_id
                )
            )
        ).all()
    return {key: amount for key, amount in rows}, sum(amount for _, amount in rows)


async def holds_of(runtime: Runtime, account_id: int) -> tuple[int, dict[str, int]]:
    """The account's ``credits_held`` and the hold rows behind it, by process."""
    async with runtime.sessions() as session:
        held = (
            await session.execute(
                select(McpAccount.credits_held).where(McpAccount.id == account_id)
            )
        ).scalar_one()
        rows = (
            await session.execute(
                select(CreditHold.instance_id, CreditHold.amount).where(
                    CreditHold.account_id == account_id
                )
            )
        ).all()
    return held, {instance: amount for instance, amount in rows if amount}


async def assert_books_agree(runtime: Runtime, account_id: int) -> list[ToolCall]:
    """Every record is settled and has one charge (or none, when refunded); no charge lacks
    its record; the ledger sums to the balance; the holds add up. Returns the records."""
    records = await calls_of(runtime, account_id)
    charges, total = await ledger_of(runtime, account_id)
    calls = {key: amount for key, amount in charges.items() if key.startswith("tool_call:")}
    assert calls == {
        f"tool_call:{r.request_id}": -r.credits_charged for r in records if r.credits_charged
    }
    assert all(r.status == CallStatus.SETTLED for r in records)
    assert total == await balance(runtime, account_id)
    held, rows = await holds_of(runtime, account_id)
    assert held == sum(rows.values())
    return records


async def age_hold_rows(runtime: Runtime, seconds: float) -> None:
    """Make every hold row look untouched for ``seconds``, as if the time had passed."""
    async with runtime.sessions() as session, session.begin():
        old = datetime.now(UTC) - timedelta(seconds=seconds)
        await session.execute(update(CreditHold).values(updated_at=old))


async def test_killed_server_charges_answered_calls_once_and_its_held_credits_come_back(
    settings: Settings, upstream: Upstream, tmp_path: Path
) -> None:
    runtime = Runtime.build(settings)
    try:
        async with started(settings, tmp_path / "first.log") as (url, process):
            gateway = Gateway(url, runtime, None)
            admin = await quick_member(gateway, role=Role.ADMIN)
            await register_upstream(gateway, admin, name="echo", url=upstream.url, price=1)
            member = await quick_member(gateway, credits=100)
            async with mcp_client_at(f"{url}/mcp", member.key) as client:
                for text in ("a", "b", "c"):
                    assert text_of(await client.call_tool("echo__echo", {"text": text})) == text

            outcomes: list[Any] = []
            async with anyio.create_task_group() as group:
                for mode in ("legacy", "2026-07-28"):
                    group.start_soon(slow_calls, url, member.key, mode, outcomes)

                async def all_in_flight() -> bool:
                    return SLOW_CALLS_RUNNING.get("echo", 0) == 2 * CALLS_PER_ERA

                await eventually(all_in_flight, "every slow call runs upstream", IN_FLIGHT_SECONDS)
                answered: list[str] = []
                async with anyio.create_task_group() as fast:
                    for mode in ("legacy", "2026-07-28"):
                        fast.start_soon(fast_calls, url, member.key, mode, answered)
                # The last answers just arrived: kill before anything else can happen.
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=10)

        assert outcomes
        assert not [o for o in outcomes if isinstance(o, types.CallToolResult)]
        assert len(answered) == 2 * FAST_CALLS_PER_ERA
        answered_calls = 3 + len(answered)
        before = await assert_books_agree(runtime, member.account_id)
        # What a client received was recorded and charged before it was sent; what never
        # answered left no record and no charge, only credits still held by the dead process.
        assert [(r.tool_name, r.success, r.credits_charged) for r in before] == [
            ("echo__echo", True, 1)
        ] * answered_calls
        assert await balance(runtime, member.account_id) == 100 - answered_calls
        held, rows = await holds_of(runtime, member.account_id)
        assert held >= 2 * CALLS_PER_ERA
        [dead_instance] = rows
        # The dead process's heartbeat would lapse within a TTL and its hold rows go stale
        # within DEAD_HOLD_SECONDS; let both happen now.
        await runtime.cache.delete(f"instance:{dead_instance}")
        await age_hold_rows(runtime, 2 * DEAD_HOLD_SECONDS)

        async with started(settings, tmp_path / "second.log") as (url, _):
            after = await assert_books_agree(runtime, member.account_id)
            released = await holds_of(runtime, member.account_id)
            async with mcp_client_at(f"{url}/mcp", member.key, "2026-07-28") as client:

                async def reconnected() -> bool:  # the new process connects to its upstreams
                    return "echo__echo" in await tool_names(client)

                await eventually(reconnected, "the restarted server offers the tools again")
                result = await client.call_tool("echo__echo", {"text": "again"})
            final = await assert_books_agree(runtime, member.account_id)

        assert text_of(result) == "again"
        assert len(after) == answered_calls
        assert released == (0, {})
        assert len(final) == answered_calls + 1
        assert await balance(runtime, member.account_id) == 100 - answered_calls - 1
        assert (await holds_of(runtime, member.account_id))[0] == 0  # given back at shutdown
    finally:
        await runtime.close()
