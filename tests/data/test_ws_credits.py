"""``/mcp/ws`` reads made with an account key cost what the equivalent data tool call costs,
through the same ledger, and are refused the same way when the balance cannot pay; reads with
the shared MCP_TOKEN (no account) stay free. Against a real Tollgate on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.data.conftest import MCP_TOKEN, ask, serving, ws
from tests.gateway.conftest import (
    Gateway,
    balance,
    calls_of,
    mcp_client,
    new_member,
    text_of,
)
from tollgate.accounts.models import CallStatus, CreditTransaction, ToolCall, TransactionType
from tollgate.core.events import ToolCallEvent
from tollgate.core.settings import Settings
from tollgate.core.state import app_state
from tollgate.gateway.hub import Gateway as Hub

PRICE = 3
"""Not the default price (1), so that a charge of the wrong amount shows."""

READS: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = [
    ("data__list_records", {"model": "tickets", "limit": 3}, "list", {"limit": 3}),
    ("data__get_record", {"model": "users", "id": 1}, "get", {"id": 1}),
    (
        "data__query_records",
        {"model": "change_log", "filters": {"ticket_id": 1}},
        "query",
        {"filters": {"ticket_id": 1}},
    ),
]
"""Each data tool call and the WebSocket read that asks for the same records."""


@pytest.fixture
async def priced(data_settings: Settings) -> AsyncIterator[Gateway]:
    """A Tollgate serving ``/mcp/ws`` and the data tools at ``PRICE`` credits a read."""
    async with serving(data_settings.model_copy(update={"data_tool_price": PRICE})) as running:
        yield running


async def ledger_of(gateway: Gateway, account_id: int) -> list[CreditTransaction]:
    """The account's ``tool_call`` ledger rows, oldest first."""
    async with gateway.runtime.sessions() as session:
        rows = await session.execute(
            select(CreditTransaction)
            .where(
                CreditTransaction.account_id == account_id,
                CreditTransaction.transaction_type == TransactionType.TOOL_CALL.value,
            )
            .order_by(CreditTransaction.id)
        )
        return list(rows.scalars())


async def count_of(gateway: Gateway, model: Any) -> int:
    """How many rows ``model``'s table holds."""
    async with gateway.runtime.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


@pytest.mark.parametrize(("tool", "arguments", "action", "params"), READS)
async def test_a_websocket_read_with_an_account_key_costs_what_the_data_tool_costs(
    priced: Gateway, tool: str, arguments: dict[str, Any], action: str, params: dict[str, Any]
) -> None:
    seen: list[ToolCallEvent] = []
    app_state(priced.app).get(Hub).observers.attach(seen.append)
    member = await new_member(priced, credits=20)
    model = arguments["model"]

    async with mcp_client(priced, member.key) as client:
        called = await client.call_tool(tool, arguments)
    after_tool = await balance(priced.runtime, member.account_id)
    async with ws(priced, member.key) as socket:
        reply = await ask(socket, {"id": "r1", "action": action, "model": model, "params": params})
    after_ws = await balance(priced.runtime, member.account_id)

    assert called.is_error is not True
    assert reply["status"] == "ok"
    assert reply["data"] == called.structured_content["data"]
    assert 20 - after_tool == after_tool - after_ws == PRICE
    via_tool, via_ws = await ledger_of(priced, member.account_id)
    assert (via_ws.amount, via_ws.balance_after, via_ws.description) == (
        -PRICE,
        after_ws,
        f"Tool call {tool}",
    )
    assert via_ws.amount == via_tool.amount
    [tool_call, ws_call] = await calls_of(priced.runtime, member.account_id)
    assert (ws_call.tool_name, ws_call.upstream, ws_call.credits_charged) == (
        tool,
        "data-ws",
        PRICE,
    )
    assert (ws_call.status, ws_call.success) == (CallStatus.SETTLED, True)
    assert ws_call.request_id == via_ws.reference_id
    assert tool_call.credits_charged == PRICE
    [event] = [e for e in seen if e.upstream == "data-ws"]
    assert (event.request_id, event.credits, event.account_id) == ("r1", PRICE, member.account_id)


async def test_a_read_the_source_refuses_is_charged_as_the_tool_error_is(
    priced: Gateway,
) -> None:
    member = await new_member(priced, credits=20)
    async with mcp_client(priced, member.key) as client:
        missing = await client.call_tool("data__get_record", {"model": "tickets", "id": 99999})
    after_tool = await balance(priced.runtime, member.account_id)
    async with ws(priced, member.key) as socket:
        reply = await ask(
            socket, {"id": "m", "action": "get", "model": "tickets", "params": {"id": 99999}}
        )
    assert missing.is_error is True
    assert reply == {"id": "m", "status": "error", "error": text_of(missing)}
    assert 20 - after_tool == after_tool - await balance(priced.runtime, member.account_id)
    assert [c.error_code for c in await calls_of(priced.runtime, member.account_id)] == [
        "tool_error",
        "tool_error",
    ]


async def test_a_websocket_read_with_an_empty_balance_is_refused_and_returns_nothing(
    priced: Gateway,
) -> None:
    member = await new_member(priced, credits=0)
    async with mcp_client(priced, member.key) as client:
        refused_tool = await client.call_tool("data__list_records", {"model": "tickets"})
    async with ws(priced, member.key) as socket:
        refused = await ask(socket, {"id": "e1", "action": "list", "model": "tickets"})
        still_open = await ask(socket, {"id": "e2", "action": "get", "model": "users"})

    assert refused_tool.is_error is True
    assert refused_tool.meta is not None
    assert refused == {
        "id": "e1",
        "status": "error",
        "error": text_of(refused_tool),
        "code": refused_tool.meta["tollgate"]["code"],
    }
    assert refused["error"] == f"Not enough credits: {PRICE} needed, 0 available"
    assert refused["code"] == "insufficient_credits"
    assert "data" not in refused
    assert still_open["id"] == "e2"
    assert still_open["code"] == "insufficient_credits"
    assert await balance(priced.runtime, member.account_id) == 0
    assert await ledger_of(priced, member.account_id) == []
    assert await calls_of(priced.runtime, member.account_id) == []


async def test_reads_with_the_shared_mcp_token_stay_free(priced: Gateway) -> None:
    member = await new_member(priced, credits=20)
    async with ws(priced, MCP_TOKEN) as socket:
        for number, (_, arguments, action, params) in enumerate(READS):
            request = {"id": number, "action": action, "model": arguments["model"]}
            reply = await ask(socket, {**request, "params": params})
            assert reply["status"] == "ok", reply
    assert await count_of(priced, ToolCall) == 0
    async with priced.runtime.sessions() as session:
        charges = await session.execute(
            select(func.count())
            .select_from(CreditTransaction)
            .where(CreditTransaction.transaction_type == TransactionType.TOOL_CALL.value)
        )
    assert charges.scalar_one() == 0
    assert await balance(priced.runtime, member.account_id) == 20
