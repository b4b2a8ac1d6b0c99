"""The same data as MCP tools through ``/mcp`` (official client, both protocol eras):
``data__list_records``, ``data__get_record`` and ``data__query_records`` return what the
WebSocket protocol returns, minus the same fields; each call is metered and recorded; and
every request, WebSocket or tool, reaches the gateway's observers with its latency."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.data.conftest import SENSITIVE_COLUMNS, ask, helpdesk_path, secret_values, serving, ws
from tests.gateway.conftest import (
    ERAS,
    Gateway,
    balance,
    mcp_client,
    new_member,
    text_of,
    wait_settled,
)
from tests.waiting import eventually
from tollgate.core.events import ToolCallEvent
from tollgate.core.settings import Settings
from tollgate.core.state import app_state
from tollgate.gateway.hub import Gateway as Hub

DATA_TOOLS = {"data__list_records", "data__get_record", "data__query_records"}
MODELS = ["users", "tickets", "change_log"]
EVENT_DEADLINE_SECONDS = 10.0
"""Observers are told right after each reply; well within this."""


async def ws_reply(gateway: Gateway, request: dict[str, Any]) -> dict[str, Any]:
    async with ws(gateway) as socket:
        reply = await ask(socket, {"id": "cmp", **request})
    assert reply["status"] == "ok", reply
    return reply


def payload(result: Any) -> dict[str, Any]:
    """A data tool's answer: its structured content, which its text repeats."""
    assert result.is_error is not True, result
    structured: dict[str, Any] = result.structured_content
    assert json.loads(text_of(result)) == structured
    return structured


async def test_data_tools_are_not_offered_when_mcp_is_disabled(settings: Settings) -> None:
    async with serving(settings) as gateway:
        member = await new_member(gateway)
        async with mcp_client(gateway, member.key) as client:
            names = {t.name for t in (await client.list_tools()).tools}
    assert not names & DATA_TOOLS


@pytest.mark.parametrize("mode", ERAS)
async def test_data_tools_are_listed_with_the_allowed_models(live: Gateway, mode: str) -> None:
    member = await new_member(live)
    async with mcp_client(live, member.key, mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) >= DATA_TOOLS
    for name in DATA_TOOLS:
        schema = tools[name].input_schema
        assert schema["properties"]["model"]["enum"] == MODELS
        assert "model" in schema["required"]
    assert "id" in tools["data__get_record"].input_schema["required"]


async def test_tool_schemas_follow_the_configured_whitelist(data_settings: Settings) -> None:
    settings = data_settings.model_copy(update={"mcp_allowed_models": ["tickets"]})
    async with serving(settings) as gateway:
        member = await new_member(gateway)
        async with mcp_client(gateway, member.key) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            refused = await client.call_tool("data__list_records", {"model": "users"})
    assert tools["data__list_records"].input_schema["properties"]["model"]["enum"] == ["tickets"]
    assert refused.is_error is True
    assert text_of(refused) == "Model 'users' not allowed. Allowed models: tickets"


@pytest.mark.parametrize("mode", ERAS)
async def test_data_tools_return_the_websocket_records_minus_the_same_fields(
    live: Gateway, data_settings: Settings, mode: str
) -> None:
    member = await new_member(live)
    secrets = secret_values(helpdesk_path(data_settings))
    listing = {"model": "users", "limit": 30, "offset": 5, "filters": {"department": "support"}}
    query = {"model": "tickets", "filters": {"status": "open", "priority": "high"}, "limit": 100}
    record = {"model": "users", "id": 7}

    async with mcp_client(live, member.key, mode) as client:
        listed = payload(await client.call_tool("data__list_records", listing))
        queried = payload(await client.call_tool("data__query_records", query))
        got = payload(await client.call_tool("data__get_record", record))

    params = {k: v for k, v in listing.items() if k != "model"}
    ws_listed = await ws_reply(live, {"action": "list", "model": "users", "params": params})
    ws_queried = await ws_reply(
        live,
        {
            "action": "query",
            "model": "tickets",
            "params": {"filters": query["filters"], "limit": 100},
        },
    )
    ws_got = await ws_reply(live, {"action": "get", "model": "users", "params": {"id": 7}})

    assert listed == {k: ws_listed[k] for k in ("data", "count", "limit", "offset")}
    assert listed["count"] > 0
    assert all(r["department"] == "support" for r in listed["data"])
    assert queried == {k: ws_queried[k] for k in ("data", "count", "limit", "offset")}
    assert got == {"data": ws_got["data"]}
    assert got["data"]["id"] == 7
    for answer in (listed, got):
        text = json.dumps(answer)
        assert not [name for name in SENSITIVE_COLUMNS if name in text]
        assert not [value for value in secrets if value in text]


@pytest.mark.parametrize("mode", ERAS)
async def test_data_tools_refuse_what_the_websocket_refuses(live: Gateway, mode: str) -> None:
    member = await new_member(live)
    async with mcp_client(live, member.key, mode) as client:
        sensitive = await client.call_tool(
            "data__query_records", {"model": "users", "filters": {"password_hash": "x"}}
        )
        operator = await client.call_tool(
            "data__list_records", {"model": "tickets", "filters": {"status": {"$ne": "open"}}}
        )
        missing = await client.call_tool("data__get_record", {"model": "tickets", "id": 99999})
        other = await client.call_tool("data__list_records", {"model": "sensitive_data"})
    assert [r.is_error for r in (sensitive, operator, missing, other)] == [True] * 4
    assert text_of(sensitive) == "Invalid filter field: password_hash"
    assert text_of(operator) == "Invalid filter value for status: only exact values are supported"
    assert text_of(missing) == "Record not found: tickets 99999"
    assert text_of(other) == (
        "Model 'sensitive_data' not allowed. Allowed models: users, tickets, change_log"
    )


@pytest.mark.parametrize("mode", ERAS)
async def test_each_data_tool_call_is_charged_and_recorded(
    data_settings: Settings, mode: str
) -> None:
    settings = data_settings.model_copy(update={"data_tool_price": 2})
    async with serving(settings) as gateway:
        member = await new_member(gateway, credits=20)
        async with mcp_client(gateway, member.key, mode) as client:
            await client.call_tool("data__list_records", {"model": "tickets", "limit": 3})
            await client.call_tool("data__get_record", {"model": "users", "id": 1})
            await client.call_tool(
                "data__query_records", {"model": "change_log", "filters": {"ticket_id": 1}}
            )
        calls = await wait_settled(gateway.runtime, member.account_id)
        assert [(c.tool_name, c.upstream, c.credits_charged, c.success) for c in calls] == [
            ("data__list_records", "data", 2, True),
            ("data__get_record", "data", 2, True),
            ("data__query_records", "data", 2, True),
        ]
        assert all(c.latency_ms is not None and c.latency_ms > 0 for c in calls)
        assert await balance(gateway.runtime, member.account_id) == 14


async def _events(seen: list[ToolCallEvent], count: int) -> list[ToolCallEvent]:
    async def arrived() -> bool:
        return len(seen) >= count

    await eventually(arrived, lambda: f"{count} events; only {seen}", EVENT_DEADLINE_SECONDS)
    return list(seen)


async def test_websocket_requests_and_data_tool_calls_reach_the_observers(
    live: Gateway,
) -> None:
    seen: list[ToolCallEvent] = []
    app_state(live.app).get(Hub).observers.attach(seen.append)
    member = await new_member(live)

    async with ws(live, member.key) as socket:
        ok = await ask(socket, {"id": "w1", "action": "list", "model": "tickets"})
        refusal = await ask(socket, {"id": "w2", "action": "delete", "model": "tickets"})
    assert (ok["status"], refusal["status"]) == ("ok", "error")
    [listed, refused] = await _events(seen, 2)
    async with mcp_client(live, member.key) as client:
        await client.call_tool("data__get_record", {"model": "tickets", "id": 3})
    [tool_call] = (await _events(seen, 3))[2:]

    assert (listed.request_id, listed.upstream, listed.tool, listed.success) == (
        "w1",
        "data-ws",
        "list:tickets",
        True,
    )
    assert (listed.account_id, listed.user_id) == (member.account_id, member.user_id)
    assert listed.session_id == refused.session_id
    assert listed.session_id
    assert (refused.request_id, refused.tool, refused.success, refused.error_code) == (
        "w2",
        "delete:tickets",
        False,
        "request_refused",
    )
    assert (tool_call.upstream, tool_call.tool, tool_call.success) == (
        "data",
        "data__get_record",
        True,
    )
    assert tool_call.account_id == member.account_id
    for event in (listed, refused, tool_call):
        assert isinstance(event, ToolCallEvent)
        assert event.latency_ms > 0
