"""What a tool call costs through /mcp, in both protocol eras: a tool's own error is charged,
a backend failure (timeout, unreachable upstream) is refunded, an empty balance is refused
without a charge, and prices and tool lists decide what is offered and billed."""

from __future__ import annotations

import time

import mcp_types as types
import pytest
from mcp import MCPError
from sqlalchemy import select

from tests.gateway.conftest import (
    ERAS,
    Gateway,
    StoppableUpstream,
    Upstream,
    balance,
    calls_of,
    connect,
    http_to,
    quick_member,
    register_upstream,
    text_of,
    tool_names,
    wait_settled,
)
from tollgate.accounts.models import CreditTransaction
from tollgate.core.runtime import Runtime
from tollgate.gateway.hub import OVERHEAD_META_KEY
from tollgate.identity.models import Role


async def ledger_keys(runtime: Runtime, account_id: int) -> list[str]:
    """The idempotency keys of an account's ledger rows, oldest first."""
    async with runtime.sessions() as session:
        query = (
            select(CreditTransaction.idempotency_key)
            .where(CreditTransaction.account_id == account_id)
            .order_by(CreditTransaction.id)
        )
        return list((await session.execute(query)).scalars())


@pytest.mark.parametrize("mode", ERAS)
async def test_tool_error_is_charged_like_a_call(
    upstream: Upstream, gateway: Gateway, mode: str
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=upstream.url, price=3)
    user = await quick_member(gateway, credits=10)

    async with connect(gateway, user.key, mode) as client:
        result = await client.call_tool("echo__fail", {})

    assert result.is_error is True
    assert "boom from upstream" in text_of(result)
    assert "tollgate" not in (result.meta or {})
    [call] = await wait_settled(gateway.runtime, user.account_id)
    assert (call.success, call.is_backend_error, call.error_code) == (False, False, "tool_error")
    assert call.credits_charged == 3
    assert await balance(gateway.runtime, user.account_id) == 7
    assert f"tool_call:{call.request_id}" in await ledger_keys(gateway.runtime, user.account_id)


@pytest.mark.parametrize("mode", ERAS)
async def test_upstream_timeout_is_a_refunded_backend_error(
    upstream: Upstream, gateway: Gateway, mode: str
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(
        gateway, admin, name="echo", url=upstream.url, price=2, timeout_seconds=0.5
    )
    user = await quick_member(gateway, credits=10)

    async with connect(gateway, user.key, mode) as client:
        timed_out = await client.call_tool("echo__slow", {"seconds": 3})
        after = await client.call_tool("echo__echo", {"text": "still here"})

    assert timed_out.is_error is True
    assert timed_out.meta is not None
    assert timed_out.meta["tollgate"]["backend_error"] is True
    assert timed_out.meta["tollgate"]["code"] == "upstream_timeout"
    assert "refunded" in text_of(timed_out)
    assert (after.is_error, text_of(after)) == (False, "still here")
    slow, echo = await wait_settled(gateway.runtime, user.account_id)
    assert (slow.tool_name, slow.success, slow.is_backend_error) == ("echo__slow", False, True)
    assert (slow.error_code, slow.credits_charged, slow.credits_cost) == ("upstream_timeout", 0, 2)
    assert (echo.success, echo.credits_charged) == (True, 2)
    assert await balance(gateway.runtime, user.account_id) == 8
    keys = await ledger_keys(gateway.runtime, user.account_id)
    assert f"tool_call:{echo.request_id}" in keys
    assert not [key for key in keys if slow.request_id in key], "a refunded call moves no credits"


@pytest.mark.parametrize("mode", ERAS)
async def test_call_to_an_upstream_that_stopped_answering_is_refunded(
    lingering_upstream: StoppableUpstream, gateway: Gateway, mode: str
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=lingering_upstream.url, price=2)
    user = await quick_member(gateway, credits=10)

    async with connect(gateway, user.key, mode) as client:
        assert (await client.call_tool("echo__echo", {"text": "up"})).is_error is False
        await lingering_upstream.begin_shutdown()
        result = await client.call_tool("echo__echo", {"text": "anyone?"})

    assert result.is_error is True
    assert result.meta is not None
    assert result.meta["tollgate"]["backend_error"] is True
    answered, failed = await wait_settled(gateway.runtime, user.account_id)
    assert (answered.success, answered.credits_charged) == (True, 2)
    assert (failed.success, failed.is_backend_error, failed.credits_charged) == (False, True, 0)
    assert failed.error_code == result.meta["tollgate"]["code"]
    assert await balance(gateway.runtime, user.account_id) == 8


@pytest.mark.parametrize("mode", ERAS)
async def test_exhausted_balance_is_refused_without_a_charge_or_a_record(
    upstream: Upstream, gateway: Gateway, mode: str
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=upstream.url, price=2)
    empty = await quick_member(gateway, credits=0)
    short = await quick_member(gateway, credits=1)

    async with connect(gateway, empty.key, mode) as client:
        refused_empty = await client.call_tool("echo__echo", {"text": "hi"})
    async with connect(gateway, short.key, mode) as client:
        refused_short = await client.call_tool("echo__echo", {"text": "hi"})

    for refused in (refused_empty, refused_short):
        assert refused.is_error is True
        assert "Not enough credits" in text_of(refused)
        assert refused.meta is not None
        assert refused.meta["tollgate"]["code"] == "insufficient_credits"
        assert refused.meta["tollgate"].get("backend_error") is None
    assert refused_short.meta is not None
    assert refused_short.meta["tollgate"]["credits_needed"] == 2
    for member, credits in ((empty, 0), (short, 1)):
        assert await calls_of(gateway.runtime, member.account_id) == []
        assert await balance(gateway.runtime, member.account_id) == credits
        keys = await ledger_keys(gateway.runtime, member.account_id)
        assert not [k for k in keys if k.startswith("tool_call:")]


@pytest.mark.parametrize("mode", ERAS)
async def test_tool_prices_and_lists_decide_what_is_offered_and_what_it_costs(
    upstream: Upstream, gateway: Gateway, mode: str
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    added = await register_upstream(
        gateway,
        admin,
        name="echo",
        url=upstream.url,
        price=1,
        tool_prices={"add": 5},
        tools_denied=["fail"],
    )
    assert {t["name"]: t["price"] for t in added["tools"]}["echo__add"] == 5
    assert "echo__fail" not in {t["name"] for t in added["tools"]}
    user = await quick_member(gateway, credits=20)

    async with connect(gateway, user.key, mode) as client:
        offered = await tool_names(client)
        added_up = await client.call_tool("echo__add", {"a": 1, "b": 2})
        echoed = await client.call_tool("echo__echo", {"text": "x"})
        with pytest.raises(MCPError) as denied:
            await client.call_tool("echo__fail", {})
        async with http_to(gateway) as http:
            changed = await http.patch(
                "/api/v1/upstreams/echo",
                json={"tools_allowed": ["echo", "slow"], "tools_denied": [], "price": 4},
                headers=admin.jwt_headers,
            )
        assert changed.status_code == 200, changed.text
        offered_after = await tool_names(client)
        echoed_after = await client.call_tool("echo__echo", {"text": "y"})
        with pytest.raises(MCPError) as not_allowed:
            await client.call_tool("echo__add", {"a": 1, "b": 2})

    assert {"echo__echo", "echo__add", "echo__slow", "echo__mutate"} <= offered
    assert "echo__fail" not in offered
    assert offered_after == {"echo__echo", "echo__slow"}
    assert (text_of(added_up), text_of(echoed), text_of(echoed_after)) == ("3", "x", "y")
    assert denied.value.code == not_allowed.value.code == types.INVALID_PARAMS
    calls = await wait_settled(gateway.runtime, user.account_id)
    assert [(c.tool_name, c.credits_charged) for c in calls] == [
        ("echo__add", 5),
        ("echo__echo", 1),
        ("echo__echo", 4),
    ]
    assert await balance(gateway.runtime, user.account_id) == 20 - 5 - 1 - 4


@pytest.mark.parametrize("mode", ERAS)
async def test_unknown_tool_is_an_invalid_params_error_and_costs_nothing(
    upstream: Upstream, gateway: Gateway, mode: str
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=upstream.url, price=1)
    user = await quick_member(gateway, credits=5)

    async with connect(gateway, user.key, mode) as client:
        errors = []
        for name in ("echo__nope", "nope", "other__echo", "echo__"):
            with pytest.raises(MCPError) as unknown:
                await client.call_tool(name, {"text": "x"})
            errors.append(unknown.value)

    assert [e.code for e in errors] == [types.INVALID_PARAMS] * 4
    assert "echo__nope" in errors[0].message
    assert await calls_of(gateway.runtime, user.account_id) == []
    assert await balance(gateway.runtime, user.account_id) == 5


@pytest.mark.parametrize("mode", ERAS)
async def test_result_reports_tollgates_own_time_without_the_upstreams(
    upstream: Upstream, gateway: Gateway, mode: str
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=upstream.url, price=1)
    user = await quick_member(gateway, credits=10)
    upstream_seconds = 0.3

    async with connect(gateway, user.key, mode) as client:
        began = time.perf_counter()
        slow = await client.call_tool("echo__slow", {"seconds": upstream_seconds})
        seen_ms = (time.perf_counter() - began) * 1000

    assert slow.meta is not None
    overhead_ms = slow.meta[OVERHEAD_META_KEY]
    assert isinstance(overhead_ms, float)
    assert 0 < overhead_ms < seen_ms - upstream_seconds * 1000
