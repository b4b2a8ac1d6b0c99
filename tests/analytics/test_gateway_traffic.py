"""Tollgate's own traffic reaches analytics by itself: tool calls through ``/mcp`` (both
protocol eras) become usage events, latency metrics and session rows, backend failures
become error logs, data requests on ``/mcp/ws`` become events, and ``/metrics`` counts them
per upstream and tool without any per-user label."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from tests.gateway.conftest import (
    ERAS,
    Gateway,
    Member,
    Upstream,
    add_upstream,
    mcp_client,
    quick_member,
    serving,
)
from tests.waiting import eventually
from tollgate.analytics.recorder import LATENCY_METRIC
from tollgate.core.settings import HELPDESK_FILE, Settings
from tollgate.data.demo import create_helpdesk
from tollgate.data.service import WS_UPSTREAM
from tollgate.identity.models import Role

RECORD_DEADLINE_SECONDS = 10.0
"""The recorder writes in batches off the request path; records land well within this."""

PRICE = 2
LEGACY_VERSION = "2025-11-25"
"""The protocol version the official client negotiates in legacy mode."""
TOOLS = ("echo__echo", "echo__add", "echo__fail")


async def analytics(gateway: Gateway, admin: Member, path: str, **params: Any) -> Any:
    """GET an analytics resource of the running gateway as ``admin``."""
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        response = await http.get(
            f"/api/v1/analytics/{path}", params=params, headers=admin.jwt_headers
        )
    assert response.status_code == 200, response.text
    return response.json()


async def recorded(gateway: Gateway, admin: Member, path: str, total: int, **params: Any) -> Any:
    """The page of ``path`` once it holds ``total`` records (bounded wait)."""
    last: dict[str, Any] = {"total": 0}

    async def complete() -> dict[str, Any] | None:
        last.update(await analytics(gateway, admin, path, **params))
        return dict(last) if last["total"] >= total else None

    def missing() -> str:
        return f"{path} {params}: {total} recorded; only {last['total']}"

    page = await eventually(complete, missing, RECORD_DEADLINE_SECONDS)
    assert page["total"] == total, page
    return page


async def three_calls(gateway: Gateway, upstream: Upstream, mode: str) -> tuple[Member, Member]:
    """An admin registers the test upstream, a user calls echo, add and fail through /mcp."""
    admin = await quick_member(gateway, role=Role.ADMIN)
    await add_upstream(gateway, admin, name="echo", url=upstream.url, price=PRICE)
    user = await quick_member(gateway, credits=100)
    async with mcp_client(gateway, user.key, mode) as client:
        assert (await client.call_tool("echo__echo", {"text": "hi"})).is_error is False
        assert (await client.call_tool("echo__add", {"a": 1, "b": 2})).is_error is False
        assert (await client.call_tool("echo__fail", {})).is_error is True
    return admin, user


@pytest.mark.parametrize("mode", ERAS)
async def test_tool_calls_through_mcp_become_events_metrics_sessions_and_dashboard_counts(
    upstream: Upstream, gateway: Gateway, mode: str
) -> None:
    admin, user = await three_calls(gateway, upstream, mode)

    events = (await recorded(gateway, admin, "events", 3))["items"]
    assert sorted(e["tool_name"] for e in events) == sorted(TOOLS)
    by_tool = {e["tool_name"]: e for e in events}
    assert {e["service"] for e in events} == {"echo"}
    assert {e["event_type"] for e in events} == {"tool_call"}
    assert {t: e["success"] for t, e in by_tool.items()} == {
        "echo__echo": True,
        "echo__add": True,
        "echo__fail": False,
    }
    assert by_tool["echo__fail"]["error_message"] == "tool_error"
    assert {e["credits"] for e in events} == {PRICE}
    assert all(e["response_time_ms"] > 0 for e in events)
    assert all(e["metadata"]["backend_error"] is False for e in events)
    [version] = {e["metadata"]["protocol_version"] for e in events}
    assert version == ("2026-07-28" if mode == "2026-07-28" else LEGACY_VERSION)

    metrics = (await recorded(gateway, admin, "metrics", 3, metric_name=LATENCY_METRIC))["items"]
    assert sorted(m["tags"]["tool"] for m in metrics) == sorted(TOOLS)
    assert {m["tags"]["upstream"] for m in metrics} == {"echo"}
    assert {m["metric_unit"] for m in metrics} == {"ms"}
    assert sorted(m["metric_value"] for m in metrics) == sorted(
        e["response_time_ms"] for e in events
    )

    sessions = await analytics(gateway, admin, "sessions")
    if mode == "legacy":
        [session] = sessions["items"]
        assert session["session_id"]
        assert {e["session_id"] for e in events} == {session["session_id"]}
        assert (session["account_id"], session["total_requests"]) == (user.account_id, 3)
        assert session["total_errors"] == 1
        assert session["total_processing_ms"] == pytest.approx(
            sum(e["response_time_ms"] for e in events), rel=1e-3
        )
    else:
        assert sessions["total"] == 0
        assert {e["session_id"] for e in events} == {None}

    board = await analytics(gateway, admin, "dashboard")
    recent = board["last_5_minutes"]
    assert (recent["calls"], recent["failed"], recent["credits_spent"]) == (3, 1, 3 * PRICE)
    assert recent["errors"] == 0
    assert sorted(t["tool"] for t in board["top_tools"]) == sorted(TOOLS)
    assert board["active_sessions"] == (1 if mode == "legacy" else 0)
    assert board["credits_spent_today"] == 3 * PRICE
    assert (await analytics(gateway, admin, "errors"))["total"] == 0


async def test_upstream_timeout_becomes_an_error_log_and_a_failed_event(
    upstream: Upstream, gateway: Gateway
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    await add_upstream(
        gateway, admin, name="echo", url=upstream.url, price=PRICE, timeout_seconds=0.5
    )
    user = await quick_member(gateway, credits=100)
    async with mcp_client(gateway, user.key, "legacy") as client:
        timed_out = await client.call_tool("echo__slow", {"seconds": 3})
    assert timed_out.is_error is True

    [error] = (await recorded(gateway, admin, "errors", 1))["items"]
    assert (error["error_type"], error["tool_name"], error["service"]) == (
        "upstream_timeout",
        "echo__slow",
        "echo",
    )
    assert error["resolved"] is False
    assert error["session_id"]
    [event] = (await recorded(gateway, admin, "events", 1))["items"]
    assert (event["success"], event["credits"], event["error_message"]) == (
        False,
        0,
        "upstream_timeout",
    )
    assert event["metadata"]["backend_error"] is True
    assert event["metadata"]["request_id"] == error["metadata"]["request_id"]
    [session] = (await analytics(gateway, admin, "sessions"))["items"]
    assert (session["total_requests"], session["total_errors"]) == (1, 1)
    board = await analytics(gateway, admin, "dashboard")
    assert (board["last_5_minutes"]["errors"], board["last_5_minutes"]["failed"]) == (1, 1)
    assert board["credits_spent_today"] == 0
    summary = await analytics(gateway, admin, "summary", hours=1)
    assert (summary["errors"], summary["unresolved_errors"]) == (1, 1)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The tollgate_* samples of a /metrics page, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("tollgate_")
    }


async def scrape(gateway: Gateway) -> str:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def test_metrics_endpoint_counts_calls_and_latency_per_upstream_and_tool(
    upstream: Upstream, gateway: Gateway
) -> None:
    before = samples(await scrape(gateway))

    await three_calls(gateway, upstream, "legacy")

    text = await scrape(gateway)
    after = samples(text)

    def delta(name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        return after.get(key, 0.0) - before.get(key, 0.0)

    for tool in TOOLS:
        outcome = "tool_error" if tool == "echo__fail" else "ok"
        labels = {"upstream": "echo", "tool": tool}
        assert delta("tollgate_tool_calls_total", outcome=outcome, **labels) == 1, tool
        assert delta("tollgate_tool_call_duration_seconds_count", **labels) == 1, tool
        assert delta("tollgate_tool_call_duration_seconds_bucket", le="+Inf", **labels) == 1
        assert delta("tollgate_tool_call_duration_seconds_sum", **labels) > 0, tool
    assert (
        delta("tollgate_tool_call_errors_total", upstream="echo", tool="echo__fail", kind="tool")
        == 1
    )
    assert delta("tollgate_credits_charged_total") == 3 * PRICE
    label_names = {name for _, labels in after for name, _ in labels}
    assert label_names.isdisjoint({"user", "user_id", "account", "account_id", "email", "key"})
    assert "# TYPE tollgate_tool_call_duration_seconds histogram" in text


async def test_data_requests_on_the_websocket_become_usage_events(settings: Settings) -> None:
    create_helpdesk(settings.data_dir / HELPDESK_FILE)
    token = "data-token-for-analytics"
    data_settings = settings.model_copy(update={"mcp_enabled": True, "mcp_token": token})
    async with serving(data_settings) as gateway:
        admin = await quick_member(gateway, role=Role.ADMIN)
        url = gateway.url.replace("http://", "ws://", 1) + "/mcp/ws"
        async with connect(url, additional_headers={"X-MCP-Token": token}) as socket:
            for number, model in enumerate(("users", "no_such_model")):
                request = {"id": f"r{number}", "action": "list", "model": model, "params": {}}
                await socket.send(json.dumps(request))
                await asyncio.wait_for(socket.recv(), RECORD_DEADLINE_SECONDS)

        page = await recorded(gateway, admin, "events", 2, event_type="data_request")

    by_tool = {e["tool_name"]: e for e in page["items"]}
    assert set(by_tool) == {"list:users", "list:-"}, "a model nobody may read is not a label"
    assert {e["service"] for e in page["items"]} == {WS_UPSTREAM}
    assert (by_tool["list:users"]["success"], by_tool["list:-"]["success"]) == (
        True,
        False,
    )
    assert len({e["session_id"] for e in page["items"]}) == 1
