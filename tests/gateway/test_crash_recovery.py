"""Killing the server in the middle of tool calls and starting it again keeps the rule: every
call whose result a client received is charged exactly once, every call that never answered
is refunded, and the ledger sums to the balance. No charge without a record, no record
without its ledger row, nothing pending: the calls the dead process left behind (they never
answered) are settled at the next start as refunded backend errors."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from sqlalchemy import func, select

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
    wait_settled,
)
from tests.live import TOLLGATE, free_port, server_env, wait_healthy
from tests.waiting import eventually
from tollgate.accounts.models import CallStatus, CreditTransaction, ToolCall
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
"""Every call is reserved (charged, recorded pending) well within this."""


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


async def ledger_and_records(runtime: Runtime, account_id: int) -> dict[str, Any]:
    """What the books say for one account."""
    async with runtime.sessions() as session:
        charge_keys = set(
            (
                await session.execute(
                    select(CreditTransaction.idempotency_key).where(
                        CreditTransaction.account_id == account_id,
                        CreditTransaction.transaction_type == "tool_call",
                    )
                )
            ).scalars()
        )
        refund_keys = set(
            (
                await session.execute(
                    select(CreditTransaction.idempotency_key).where(
                        CreditTransaction.account_id == account_id,
                        CreditTransaction.transaction_type == "refund",
                    )
                )
            ).scalars()
        )
        total = (
            await session.execute(
                select(func.coalesce(func.sum(CreditTransaction.amount), 0)).where(
                    CreditTransaction.account_id == account_id
                )
            )
        ).scalar_one()
    return {"charges": charge_keys, "refunds": refund_keys, "sum": int(total)}


async def assert_books_agree(runtime: Runtime, account_id: int) -> list[ToolCall]:
    """No charge without a record, no record without its charge, and the ledger sums to the
    balance. Returns the records."""
    records = await calls_of(runtime, account_id)
    books = await ledger_and_records(runtime, account_id)
    assert books["charges"] == {f"tool_call:{r.request_id}" for r in records}
    assert books["refunds"] == {
        f"refund:{r.request_id}"
        for r in records
        if r.status != CallStatus.PENDING and not r.credits_charged
    }
    assert books["sum"] == await balance(runtime, account_id)
    return records


async def test_killed_server_leaves_no_charge_without_record_and_settles_at_restart(
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
            await wait_settled(runtime, member.account_id)

            outcomes: list[Any] = []
            async with anyio.create_task_group() as group:
                for mode in ("legacy", "2026-07-28"):
                    group.start_soon(slow_calls, url, member.key, mode, outcomes)

                async def all_in_flight() -> bool:
                    pending = [
                        r
                        for r in await calls_of(runtime, member.account_id)
                        if r.status == CallStatus.PENDING
                    ]
                    return len(pending) == 2 * CALLS_PER_ERA

                await eventually(all_in_flight, "every slow call is charged", IN_FLIGHT_SECONDS)
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
        # What a client received was settled before it was sent: the dead process left
        # only the calls that never answered pending.
        echoed = [r for r in before if r.tool_name == "echo__echo"]
        assert [(r.status, r.success, r.credits_charged) for r in echoed] == [
            (CallStatus.SETTLED, True, 1)
        ] * answered_calls
        pending = [r for r in before if r.status == CallStatus.PENDING]
        assert {r.tool_name for r in pending} == {"echo__slow"}
        assert len(pending) == 2 * CALLS_PER_ERA
        assert await balance(runtime, member.account_id) == 100 - answered_calls - 2 * CALLS_PER_ERA
        # The dead process's heartbeat would lapse within a TTL; let it lapse now.
        for instance_id in {r.instance_id for r in pending}:
            await runtime.cache.delete(f"instance:{instance_id}")

        async with started(settings, tmp_path / "second.log") as (url, _):
            after = await assert_books_agree(runtime, member.account_id)
            async with mcp_client_at(f"{url}/mcp", member.key, "2026-07-28") as client:

                async def reconnected() -> bool:  # the new process connects to its upstreams
                    return "echo__echo" in await tool_names(client)

                await eventually(reconnected, "the restarted server offers the tools again")
                result = await client.call_tool("echo__echo", {"text": "again"})
            final = await wait_settled(runtime, member.account_id)

        assert text_of(result) == "again"
        assert [r for r in after if r.status == CallStatus.PENDING] == []
        abandoned = {r.request_id: r for r in after if r.error_code == "abandoned"}
        assert set(abandoned) == {r.request_id for r in pending}
        for record in abandoned.values():
            assert (record.success, record.is_backend_error, record.credits_charged) == (
                False,
                True,
                0,
            )
        charged = [r for r in after if r.credits_charged]
        assert {r.request_id for r in charged} == {r.request_id for r in echoed}
        assert all(r.status == CallStatus.SETTLED and r.success for r in charged)
        assert len(final) == answered_calls + 2 * CALLS_PER_ERA + 1
        await assert_books_agree(runtime, member.account_id)
        assert await balance(runtime, member.account_id) == 100 - answered_calls - 1
    finally:
        await runtime.close()
