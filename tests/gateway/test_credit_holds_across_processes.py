"""Credits reserved in memory stay exact across processes: two Tollgate processes sharing one
database, two hundred concurrent calls against fifty credits, and exactly fifty are answered
and charged; the rest are refused as ``insufficient_credits`` and cost nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
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
)
from tests.live import server_env, serving
from tests.waiting import eventually
from tollgate.accounts.models import CreditTransaction, McpAccount
from tollgate.core.runtime import Runtime
from tollgate.core.settings import Settings
from tollgate.identity.models import Role

CREDITS = 50
CALLS = 200
CLIENTS_PER_PROCESS = 4
"""Each process serves four clients (two per protocol era) making their calls at once."""

RELEASE_DEADLINE_SECONDS = 15.0
"""Idle holds go back to the balance within ``credit_hold_seconds`` (5 s by default)."""


async def _calls_on_one_client(url: str, key: str, mode: str, count: int, out: list[Any]) -> None:
    async def one(client: Any, number: int) -> None:
        out.append(await client.call_tool("echo__echo", {"text": f"{mode}-{number}"}))

    async with mcp_client_at(f"{url}/mcp", key, mode) as client, anyio.create_task_group() as group:
        for number in range(count):
            group.start_soon(one, client, number)


async def _all_calls(urls: tuple[str, ...], key: str) -> list[Any]:
    """CALLS calls at once, spread over CLIENTS_PER_PROCESS clients of each process."""
    results: list[Any] = []
    per_client = CALLS // (len(urls) * CLIENTS_PER_PROCESS)
    async with anyio.create_task_group() as group:
        for url in urls:
            for number in range(CLIENTS_PER_PROCESS):
                mode = "legacy" if number % 2 else "2026-07-28"
                group.start_soon(_calls_on_one_client, url, key, mode, per_client, results)
    return results


async def _offers_echo(url: str, key: str) -> None:
    """Wait until a process offers the upstream's tool: a process that just started may
    still be connecting to the upstream (on a loaded machine its first attempt can fail)."""

    async def listed() -> bool:
        async with mcp_client_at(f"{url}/mcp", key) as client:
            return "echo__echo" in {t.name for t in (await client.list_tools()).tools}

    await eventually(listed, f"{url} offers echo__echo", RELEASE_DEADLINE_SECONDS)


async def _held(runtime: Runtime, account_id: int) -> int:
    async with runtime.sessions() as session:
        query = select(McpAccount.credits_held).where(McpAccount.id == account_id)
        return int((await session.execute(query)).scalar_one())


async def _ledger_sum(runtime: Runtime, account_id: int) -> int:
    async with runtime.sessions() as session:
        query = select(func.coalesce(func.sum(CreditTransaction.amount), 0)).where(
            CreditTransaction.account_id == account_id
        )
        return int((await session.execute(query)).scalar_one())


async def test_two_processes_sell_exactly_the_credits_there_are(
    settings: Settings, upstream: Upstream, tmp_path: Path
) -> None:
    runtime = Runtime.build(settings)
    env = server_env(settings)
    try:
        async with serving(env, tmp_path / "first.log") as first:
            admin = await quick_member(Gateway(first, runtime, None), role=Role.ADMIN)
            await register_upstream(
                Gateway(first, runtime, None), admin, name="echo", url=upstream.url, price=1
            )
            member = await quick_member(Gateway(first, runtime, None), credits=CREDITS)
            # Started after the registration, the second process connects to the upstream
            # at once (without a shared cache it would not hear of it before a catalogue sync).
            async with serving(env, tmp_path / "second.log") as second:
                for url in (first, second):
                    await _offers_echo(url, member.key)
                results = await _all_calls((first, second), member.key)

                async def released() -> bool:
                    return await _held(runtime, member.account_id) == 0

                await eventually(released, "idle holds are given back", RELEASE_DEADLINE_SECONDS)

        answered = [r for r in results if not r.is_error]
        refused = [r for r in results if r.is_error]
        assert len(results) == CALLS
        assert len(answered) == CREDITS
        assert all(text_of(r).startswith(("legacy-", "2026-07-28-")) for r in answered)
        assert {r.meta["tollgate"]["code"] for r in refused} == {"insufficient_credits"}
        records = await calls_of(runtime, member.account_id)
        assert [(r.success, r.credits_charged) for r in records] == [(True, 1)] * CREDITS
        assert await balance(runtime, member.account_id) == 0
        assert await _ledger_sum(runtime, member.account_id) == 0
    finally:
        await runtime.close()
