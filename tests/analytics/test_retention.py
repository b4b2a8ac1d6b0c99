"""Retention: raw events older than ``analytics_retention_days`` are rolled up into hourly
rows and deleted; newer events stay; running the job again changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from tests.analytics.conftest import insert_events, rows
from tollgate.analytics.jobs import roll_up_and_prune
from tollgate.analytics.models import HourlyRollup, UsageEvent
from tollgate.core.runtime import Runtime


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


async def rollups(runtime: Runtime) -> dict[tuple[datetime, str], tuple[int, int, float, int]]:
    """Every hourly rollup: (hour, tool) -> (calls, errors, total ms, credits)."""
    async with runtime.sessions() as session:
        found = (await session.execute(select(HourlyRollup))).scalars().all()
    return {
        (r.hour, r.tool_name): (r.calls, r.errors, r.total_response_ms, r.credits) for r in found
    }


async def remaining(runtime: Runtime) -> list[str | None]:
    async with runtime.sessions() as session:
        query = select(UsageEvent.tool_name).order_by(UsageEvent.timestamp)
        return list((await session.execute(query)).scalars())


async def test_old_events_are_rolled_up_by_hour_and_tool_then_pruned(runtime: Runtime) -> None:
    days = runtime.settings.analytics_retention_days
    first_hour = hour_of(datetime.now(UTC) - timedelta(days=days + 10))
    second_hour = first_hour + timedelta(hours=1)
    minute = timedelta(minutes=1)
    await insert_events(
        runtime,
        {
            "timestamp": first_hour + 5 * minute,
            "tool_name": "alpha",
            "credits": 2,
            "response_time_ms": 10.0,
        },
        {
            "timestamp": first_hour + 15 * minute,
            "tool_name": "alpha",
            "credits": 2,
            "response_time_ms": 30.0,
            "success": False,
        },
        {"timestamp": first_hour + 59 * minute, "tool_name": "beta", "credits": 5},
        {
            "timestamp": second_hour + 1 * minute,
            "tool_name": "alpha",
            "credits": 1,
            "response_time_ms": 4.0,
        },
        {"timestamp": second_hour + 2 * minute, "tool_name": None, "success": False},
        {
            "timestamp": datetime.now(UTC) - timedelta(days=days - 1),
            "tool_name": "recent",
        },
        {"timestamp": datetime.now(UTC) - timedelta(minutes=5), "tool_name": "now"},
    )

    pruned = await roll_up_and_prune(runtime.sessions, days)

    assert pruned == 5
    assert await remaining(runtime) == ["recent", "now"]
    assert await rollups(runtime) == {
        (first_hour, "alpha"): (2, 1, 40.0, 4),
        (first_hour, "beta"): (1, 0, 0.0, 5),
        (second_hour, "alpha"): (1, 0, 4.0, 1),
        (second_hour, "-"): (1, 1, 0.0, 0),
    }


async def test_running_the_retention_job_again_changes_nothing(runtime: Runtime) -> None:
    days = runtime.settings.analytics_retention_days
    old = datetime.now(UTC) - timedelta(days=days + 2)
    await insert_events(
        runtime,
        *[{"timestamp": old, "tool_name": "alpha", "credits": 3} for _ in range(4)],
        {"timestamp": datetime.now(UTC), "tool_name": "now"},
    )
    assert await roll_up_and_prune(runtime.sessions, days) == 4
    first = await rollups(runtime)

    assert await roll_up_and_prune(runtime.sessions, days) == 0

    assert await rollups(runtime) == first == {(hour_of(old), "alpha"): (4, 0, 0.0, 12)}
    assert await remaining(runtime) == ["now"]


async def test_late_old_events_are_added_to_the_existing_hour(runtime: Runtime) -> None:
    days = runtime.settings.analytics_retention_days
    old = datetime.now(UTC) - timedelta(days=days + 2)
    await insert_events(runtime, {"timestamp": old, "tool_name": "alpha", "credits": 3})
    await roll_up_and_prune(runtime.sessions, days)
    await insert_events(
        runtime,
        {
            "timestamp": old + timedelta(seconds=1),
            "tool_name": "alpha",
            "credits": 2,
            "success": False,
        },
    )

    assert await roll_up_and_prune(runtime.sessions, days) == 1

    assert await rollups(runtime) == {(hour_of(old), "alpha"): (2, 1, 0.0, 5)}
    assert await rows(runtime, UsageEvent) == 0


async def test_events_within_the_retention_are_kept(runtime: Runtime) -> None:
    days = runtime.settings.analytics_retention_days
    await insert_events(
        runtime,
        {"timestamp": datetime.now(UTC) - timedelta(days=days - 1), "tool_name": "a"},
        {"timestamp": datetime.now(UTC) - timedelta(days=1), "tool_name": "b"},
    )

    assert await roll_up_and_prune(runtime.sessions, days) == 0

    assert await remaining(runtime) == ["a", "b"]
    assert await rows(runtime, HourlyRollup) == 0
