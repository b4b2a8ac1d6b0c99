"""The recorder behind the gateway's observer hook: events queued without waiting are written
together in one batch, sessions are counted across batches, and each event is published on
the live feed in the shape the API returns."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from tollgate.analytics.models import AnalyticsSession, ErrorLog, PerformanceMetric, UsageEvent
from tollgate.analytics.recorder import LATENCY_METRIC, LIVE_CHANNEL, Recorder
from tollgate.core.events import ToolCallEvent
from tollgate.core.runtime import Runtime

FEED_DEADLINE_SECONDS = 10.0


def call(session_id: str | None, **fields: Any) -> ToolCallEvent:
    """A finished call as the gateway reports it."""
    values: dict[str, Any] = {
        "request_id": uuid.uuid4().hex,
        "account_id": 42,
        "user_id": 7,
        "upstream": "recorder-test",
        "tool": "recorder-test__echo",
        "credits": 1,
        "success": True,
        "is_backend_error": False,
        "error_code": None,
        "latency_ms": 10.0,
        "protocol_version": "2025-11-25",
        "session_id": session_id,
    }
    return ToolCallEvent(**{**values, **fields})


@pytest.fixture
async def recorder(runtime: Runtime) -> AsyncIterator[Recorder]:
    """A recorder of the test's own, writing to the test's database."""
    running = Recorder(runtime.writes, runtime.cache)
    running.start()
    try:
        yield running
    finally:
        await running.stop()


async def session_row(runtime: Runtime, session_id: str) -> AnalyticsSession:
    async with runtime.sessions() as session:
        query = select(AnalyticsSession).where(AnalyticsSession.session_id == session_id)
        return (await session.execute(query)).scalar_one()


async def event_times(runtime: Runtime, session_id: str) -> list[Any]:
    async with runtime.sessions() as session:
        query = (
            select(UsageEvent.timestamp)
            .where(UsageEvent.session_id == session_id)
            .order_by(UsageEvent.timestamp)
        )
        return list((await session.execute(query)).scalars())


async def test_new_session_spans_its_first_to_its_last_event_of_one_batch(
    runtime: Runtime, recorder: Recorder
) -> None:
    recorder.observe(call("S", latency_ms=5.0))
    recorder.observe(call("S", success=False, error_code="tool_error", latency_ms=7.0))
    recorder.observe(call("S", latency_ms=9.0))
    await recorder.flush()

    row = await session_row(runtime, "S")
    times = await event_times(runtime, "S")
    assert len(times) == 3
    assert (row.started_at, row.last_activity_at) == (times[0], times[-1])
    assert (row.total_requests, row.total_errors, row.account_id) == (3, 1, 42)
    assert row.total_processing_ms == pytest.approx(21.0)


async def test_later_batches_add_to_a_known_session(runtime: Runtime, recorder: Recorder) -> None:
    recorder.observe(call("S", latency_ms=5.0))
    await recorder.flush()
    started = (await session_row(runtime, "S")).started_at

    recorder.observe(call("S", latency_ms=2.5, success=False, is_backend_error=True))
    recorder.observe(call(None))
    await recorder.flush()

    row = await session_row(runtime, "S")
    times = await event_times(runtime, "S")
    assert (row.started_at, row.last_activity_at) == (started, times[-1])
    assert (row.total_requests, row.total_errors) == (2, 1)
    assert row.total_processing_ms == pytest.approx(7.5)
    async with runtime.sessions() as session:
        sessions = (await session.execute(select(AnalyticsSession))).scalars().all()
        errors = (await session.execute(select(ErrorLog))).scalars().all()
        metrics = (await session.execute(select(PerformanceMetric))).scalars().all()
    assert len(sessions) == 1
    assert [(e.session_id, e.service, e.resolved) for e in errors] == [
        ("S", "recorder-test", False)
    ]
    assert sorted(m.metric_value for m in metrics) == [2.5, 5.0, 10.0]
    assert {m.metric_name for m in metrics} == {LATENCY_METRIC}


async def test_each_recorded_event_is_published_as_the_api_shows_it(
    runtime: Runtime, recorder: Recorder
) -> None:
    async with runtime.cache.subscribe(LIVE_CHANNEL) as messages:
        event = call("S", latency_ms=3.0)
        recorder.observe(event)
        await recorder.flush()
        raw = await asyncio.wait_for(anext(aiter(messages)), FEED_DEADLINE_SECONDS)

    message = json.loads(raw)
    assert message["type"] == "event"
    assert (message["tool_name"], message["service"], message["session_id"]) == (
        event.tool,
        event.upstream,
        "S",
    )
    assert (message["success"], message["credits"], message["response_time_ms"]) == (True, 1, 3.0)
    assert message["metadata"]["request_id"] == event.request_id
    assert "event_metadata" not in message


async def test_overlong_tool_name_is_cut_to_fit_and_spoils_nothing_of_its_batch(
    runtime: Runtime, recorder: Recorder
) -> None:
    overlong = "list:" + "m" * 300  # a data request names its model freely
    recorder.observe(call("S", tool="recorder-test__echo"))
    recorder.observe(call("S", tool=overlong, success=False, is_backend_error=True))
    await recorder.flush()

    async with runtime.sessions() as session:
        tools = (await session.execute(select(UsageEvent.tool_name))).scalars().all()
        errors = (await session.execute(select(ErrorLog.tool_name))).scalars().all()
    assert sorted(tool or "" for tool in tools) == sorted(["recorder-test__echo", overlong[:200]])
    assert errors == [overlong[:200]]
    assert (await session_row(runtime, "S")).total_requests == 2
