"""Reading analytics back: each kind with its filters and pages, resolving errors, the
summary of a period and the dashboard's windows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, insert

from tests.analytics.conftest import (
    Person,
    ago,
    get_ok,
    insert_events,
    iso,
    person,
    post_ok,
)
from tollgate.analytics.models import AnalyticsSession, ErrorLog, UsageEvent
from tollgate.core.database import transaction
from tollgate.core.runtime import Runtime

Spec = tuple[float, dict[str, Any]]
"""Minutes ago, and the record's fields."""

EVENTS: list[Spec] = [
    (50, {"tool_name": "alpha", "session_id": "s1", "service": "svcA", "success": True}),
    (40, {"tool_name": "beta", "session_id": "s1", "service": "svcB", "success": False}),
    (
        30,
        {"tool_name": "alpha", "session_id": "s2", "service": "svcA", "event_type": "data_request"},
    ),
    (20, {"tool_name": "alpha", "session_id": "s2", "service": "svcA", "success": False}),
    (10, {"tool_name": "gamma", "session_id": "s3", "service": "svcB", "success": True}),
]


def numbered(specs: list[Spec]) -> tuple[list[dict[str, Any]], list[str]]:
    """Records marked with their index in ``metadata``/``tags``, and their timestamps."""
    records, stamps = [], []
    for number, (minutes, fields) in enumerate(specs):
        stamp = iso(ago(minutes=minutes))
        stamps.append(stamp)
        records.append({**fields, "timestamp": stamp, "metadata": {"n": number}})
    return records, stamps


def numbers(page: dict[str, Any], key: str = "metadata") -> list[int]:
    """The indexes of a page's records, in the page's order."""
    return [item[key]["n"] for item in page["items"]]


@pytest.fixture
async def stamps(client: httpx.AsyncClient, admin: Person) -> list[str]:
    """The EVENTS stored through the API; their timestamps."""
    records, stamps = numbered(EVENTS)
    await post_ok(client, "batch", {"events": records}, admin.headers)
    return stamps


EVENT_FILTERS: list[tuple[dict[str, str], list[int]]] = [
    ({}, [4, 3, 2, 1, 0]),
    ({"tool_name": "alpha"}, [3, 2, 0]),
    ({"session_id": "s1"}, [1, 0]),
    ({"success": "false"}, [3, 1]),
    ({"success": "true"}, [4, 2, 0]),
    ({"event_type": "data_request"}, [2]),
    ({"service": "svcB"}, [4, 1]),
    ({"tool_name": "alpha", "success": "true"}, [2, 0]),
    ({"tool_name": "nothing"}, []),
]


async def test_events_are_filtered_newest_first(
    client: httpx.AsyncClient, admin: Person, stamps: list[str]
) -> None:
    for filters, expected in EVENT_FILTERS:
        page = await get_ok(client, "events", admin.headers, **filters)

        assert numbers(page) == expected, filters
        assert page["total"] == len(expected), filters


async def test_event_time_range_includes_its_start_and_excludes_its_end(
    client: httpx.AsyncClient, admin: Person, stamps: list[str]
) -> None:
    page = await get_ok(client, "events", admin.headers, start=stamps[1], end=stamps[3])
    assert numbers(page) == [2, 1]

    only_start = await get_ok(client, "events", admin.headers, start=stamps[3])
    assert numbers(only_start) == [4, 3]

    only_end = await get_ok(client, "events", admin.headers, end=stamps[1], tool_name="alpha")
    assert numbers(only_end) == [0]


async def test_events_are_paged_with_the_total_of_all_matches(
    client: httpx.AsyncClient, admin: Person, stamps: list[str]
) -> None:
    pages = [
        await get_ok(client, "events", admin.headers, limit=2, offset=offset)
        for offset in (0, 2, 4, 6)
    ]

    assert [numbers(p) for p in pages] == [[4, 3], [2, 1], [0], []]
    assert {p["total"] for p in pages} == {5}


async def test_bad_query_parameter_is_refused_with_a_validation_error(
    client: httpx.AsyncClient, admin: Person
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"start": "2026-01-01T00:00:00"}, "start"),
        ({"end": "not-a-time"}, "end"),
        ({"limit": 0}, "limit"),
        ({"offset": -1}, "offset"),
        ({"success": "maybe"}, "success"),
    ]
    for params, field in cases:
        response = await client.get(
            "/api/v1/analytics/events", params=params, headers=admin.headers
        )

        assert response.status_code == 422, (params, response.text)
        assert [e["loc"] for e in response.json()["detail"]["errors"]] == [["query", field]]


async def test_metrics_are_filtered_by_name_and_time(
    client: httpx.AsyncClient, admin: Person
) -> None:
    records, stamps = numbered(
        [
            (50, {"metric_name": "queue_depth", "metric_value": 3}),
            (30, {"metric_name": "cpu", "metric_value": 0.5, "metric_unit": "ratio"}),
            (10, {"metric_name": "queue_depth", "metric_value": 9}),
        ]
    )
    metrics = [{"tags": r.pop("metadata"), **r} for r in records]
    await post_ok(client, "batch", {"metrics": metrics}, admin.headers)

    by_name = await get_ok(client, "metrics", admin.headers, metric_name="queue_depth")
    recent = await get_ok(
        client, "metrics", admin.headers, metric_name="queue_depth", start=stamps[1]
    )
    paged = await get_ok(client, "metrics", admin.headers, limit=1, offset=1)

    assert (numbers(by_name, "tags"), by_name["total"]) == ([2, 0], 2)
    assert [m["metric_value"] for m in by_name["items"]] == [9, 3]
    assert numbers(recent, "tags") == [2]
    assert (numbers(paged, "tags"), paged["total"]) == ([1], 3)


@pytest.fixture
async def error_ids(client: httpx.AsyncClient, admin: Person) -> list[int]:
    """Three error logs stored through the API; their ids, oldest first."""
    records, _ = numbered(
        [
            (40, {"error_type": "TimeoutError", "error_message": "a", "tool_name": "alpha"}),
            (20, {"error_type": "ValueError", "error_message": "b", "tool_name": "beta"}),
            (5, {"error_type": "TimeoutError", "error_message": "c", "tool_name": "beta"}),
        ]
    )
    await post_ok(client, "batch", {"errors": records}, admin.headers)
    page = await get_ok(client, "errors", admin.headers)
    return [item["id"] for item in reversed(page["items"])]


async def test_errors_are_filtered(
    client: httpx.AsyncClient, admin: Person, error_ids: list[int]
) -> None:
    cases: list[tuple[dict[str, str], list[int]]] = [
        ({"error_type": "TimeoutError"}, [2, 0]),
        ({"tool_name": "beta"}, [2, 1]),
        ({"resolved": "false"}, [2, 1, 0]),
        ({"resolved": "true"}, []),
        ({"error_type": "TimeoutError", "tool_name": "beta"}, [2]),
    ]
    for filters, expected in cases:
        page = await get_ok(client, "errors", admin.headers, **filters)

        assert numbers(page) == expected, filters
        assert page["total"] == len(expected), filters


async def test_resolving_an_error_records_when_and_by_whom_and_reopening_clears_it(
    client: httpx.AsyncClient, admin: Person, error_ids: list[int]
) -> None:
    before = datetime.now(UTC)
    resolved = await client.patch(
        f"/api/v1/analytics/errors/{error_ids[1]}", json={"resolved": True}, headers=admin.headers
    )
    assert resolved.status_code == 200, resolved.text
    body = resolved.json()
    assert (body["resolved"], body["resolved_by"]) == (True, admin.email)
    resolved_at = datetime.fromisoformat(body["resolved_at"])
    assert before.timestamp() - 5 <= resolved_at.timestamp() <= datetime.now(UTC).timestamp() + 5

    assert numbers(await get_ok(client, "errors", admin.headers, resolved="true")) == [1]
    assert numbers(await get_ok(client, "errors", admin.headers, resolved="false")) == [2, 0]

    reopened = await client.patch(
        f"/api/v1/analytics/errors/{error_ids[1]}", json={"resolved": False}, headers=admin.headers
    )
    assert reopened.status_code == 200, reopened.text
    assert (reopened.json()["resolved"], reopened.json()["resolved_at"]) == (False, None)
    assert reopened.json()["resolved_by"] is None
    assert (await get_ok(client, "errors", admin.headers, resolved="true"))["total"] == 0


async def test_resolving_an_unknown_error_is_not_found(
    client: httpx.AsyncClient, admin: Person, error_ids: list[int]
) -> None:
    response = await client.patch(
        f"/api/v1/analytics/errors/{max(error_ids) + 1000}",
        json={"resolved": True},
        headers=admin.headers,
    )

    assert response.status_code == 404
    assert response.json()["detail"]["code"] == "error_not_found"


async def test_plain_user_may_not_resolve_or_read_errors(
    client: httpx.AsyncClient, runtime: Runtime, admin: Person, error_ids: list[int]
) -> None:
    user = await person(runtime)

    patched = await client.patch(
        f"/api/v1/analytics/errors/{error_ids[0]}", json={"resolved": True}, headers=user.headers
    )
    listed = await client.get("/api/v1/analytics/errors", headers=user.headers)

    assert (patched.status_code, listed.status_code) == (403, 403)
    assert (await get_ok(client, "errors", admin.headers, resolved="true"))["total"] == 0


async def test_reading_analytics_needs_an_admin(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime)
    for path in ("events", "metrics", "errors", "costs", "sessions", "summary", "dashboard"):
        anonymous = await client.get(f"/api/v1/analytics/{path}")
        plain = await client.get(f"/api/v1/analytics/{path}", headers=user.headers)

        assert (anonymous.status_code, plain.status_code) == (401, 403), path


async def test_costs_are_filtered_by_service_and_time(
    client: httpx.AsyncClient, admin: Person
) -> None:
    records, stamps = numbered(
        [
            (50, {"service_name": "langdb", "cost_usd": "0.5"}),
            (30, {"service_name": "modal", "cost_usd": "1.25", "tokens_used": 10}),
            (10, {"service_name": "langdb", "cost_usd": "0.25"}),
        ]
    )
    await post_ok(client, "batch", {"costs": records}, admin.headers)

    langdb = await get_ok(client, "costs", admin.headers, service="langdb")
    window = await get_ok(client, "costs", admin.headers, start=stamps[0], end=stamps[2])

    assert (numbers(langdb), langdb["total"]) == ([2, 0], 2)
    assert [float(c["cost_usd"]) for c in langdb["items"]] == [0.25, 0.5]
    assert numbers(window) == [1, 0]


async def insert_sessions(runtime: Runtime, *sessions: dict[str, Any]) -> None:
    """Store session rows as the recorder does."""
    defaults = {"total_requests": 1, "total_errors": 0, "total_processing_ms": 1.0}
    async with transaction(runtime.sessions) as session:
        await session.execute(
            insert(AnalyticsSession),
            [
                {**defaults, "session_metadata": {}, "started_at": s["last_activity_at"], **s}
                for s in sessions
            ],
        )


async def test_sessions_are_listed_by_last_activity_with_time_range_and_pages(
    client: httpx.AsyncClient, runtime: Runtime, admin: Person
) -> None:
    await insert_sessions(
        runtime,
        {"session_id": "old", "last_activity_at": ago(days=3)},
        {"session_id": "a", "last_activity_at": ago(minutes=30), "total_requests": 4},
        {"session_id": "b", "last_activity_at": ago(minutes=2), "ended_at": ago(minutes=1)},
        {"session_id": "c", "last_activity_at": ago(minutes=1), "account_id": 7},
    )

    everything = await get_ok(client, "sessions", admin.headers)
    recent = await get_ok(client, "sessions", admin.headers, start=iso(ago(hours=1)))
    older = await get_ok(client, "sessions", admin.headers, end=iso(ago(hours=1)))
    second = await get_ok(client, "sessions", admin.headers, limit=1, offset=1)

    assert [s["session_id"] for s in everything["items"]] == ["c", "b", "a", "old"]
    assert everything["items"][0]["account_id"] == 7
    assert everything["items"][2]["total_requests"] == 4
    assert ([s["session_id"] for s in recent["items"]], recent["total"]) == (["c", "b", "a"], 3)
    assert [s["session_id"] for s in older["items"]] == ["old"]
    assert ([s["session_id"] for s in second["items"]], second["total"]) == (["b"], 4)


async def test_summary_reports_totals_latency_percentiles_errors_and_costs_of_the_period(
    client: httpx.AsyncClient, admin: Person
) -> None:
    latencies = [7, 3, 10, 1, 9, 2, 8, 4, 6, 5]
    recent = [
        {
            "tool_name": "alpha" if n % 3 else "beta",
            "response_time_ms": ms,
            "success": n not in (2, 5),
            "timestamp": iso(ago(minutes=n + 1)),
        }
        for n, ms in enumerate(latencies)
    ]
    recent.append({"tool_name": "alpha", "timestamp": iso(ago(minutes=30))})
    old = [{"tool_name": "gamma", "response_time_ms": 1000, "timestamp": iso(ago(hours=30))}] * 5
    errors = [
        {"error_type": "E", "error_message": "x", "timestamp": iso(ago(minutes=m))}
        for m in (5, 10, 15)
    ] + [{"error_type": "E", "error_message": "old", "timestamp": iso(ago(hours=30))}]
    costs = [
        {
            "service_name": "langdb",
            "cost_usd": "0.5",
            "tokens_used": 100,
            "timestamp": iso(ago(minutes=5)),
        },
        {"service_name": "modal", "cost_usd": "1.25", "timestamp": iso(ago(minutes=5))},
        {
            "service_name": "langdb",
            "cost_usd": "0.25",
            "tokens_used": 50,
            "timestamp": iso(ago(minutes=50)),
        },
        {"service_name": "modal", "cost_usd": "100", "timestamp": iso(ago(hours=30))},
    ]
    body = {"events": recent + old, "errors": errors, "costs": costs}
    await post_ok(client, "batch", body, admin.headers)
    newest_error = (await get_ok(client, "errors", admin.headers, limit=1))["items"][0]["id"]
    patched = await client.patch(
        f"/api/v1/analytics/errors/{newest_error}", json={"resolved": True}, headers=admin.headers
    )
    assert patched.status_code == 200

    day = await get_ok(client, "summary", admin.headers, hours=24)
    two_days = await get_ok(client, "summary", admin.headers, hours=48)

    assert day["period_hours"] == 24
    assert (day["calls"], day["successful"], day["failed"]) == (11, 9, 2)
    assert day["success_rate"] == pytest.approx(81.82)
    assert (day["latency_p50_ms"], day["latency_p95_ms"]) == (5, 10)
    assert day["avg_latency_ms"] == pytest.approx(5.5)
    assert (day["errors"], day["unresolved_errors"]) == (3, 2)
    assert day["cost_by_service"] == [
        {"service": "langdb", "cost_usd": 0.75, "tokens_used": 150},
        {"service": "modal", "cost_usd": 1.25, "tokens_used": 0},
    ]
    assert day["total_cost_usd"] == pytest.approx(2.0)
    assert [(t["tool"], t["calls"]) for t in day["top_tools"]] == [("alpha", 7), ("beta", 4)]

    assert (two_days["calls"], two_days["errors"], two_days["unresolved_errors"]) == (16, 4, 3)
    assert (two_days["latency_p50_ms"], two_days["latency_p95_ms"]) == (8, 1000)
    assert two_days["total_cost_usd"] == pytest.approx(102.0)


async def test_summary_latency_percentiles_are_nearest_rank(
    client: httpx.AsyncClient, runtime: Runtime, admin: Person
) -> None:
    cases = [(1, 1, 1), (2, 1, 2), (4, 2, 4), (20, 10, 19), (21, 11, 20), (100, 50, 95)]
    for count, p50, p95 in cases:
        async with transaction(runtime.sessions) as session:
            await session.execute(delete(UsageEvent))
        events = [{"response_time_ms": ms} for ms in range(count, 0, -1)]
        await post_ok(client, "batch", {"events": events}, admin.headers)

        summary = await get_ok(client, "summary", admin.headers, hours=1)

        assert (summary["latency_p50_ms"], summary["latency_p95_ms"]) == (p50, p95), count


async def test_summary_of_an_empty_period_has_no_latency(
    client: httpx.AsyncClient, admin: Person
) -> None:
    await post_ok(
        client, "events", {"response_time_ms": 5, "timestamp": iso(ago(hours=5))}, admin.headers
    )

    summary = await get_ok(client, "summary", admin.headers, hours=1)

    assert (summary["calls"], summary["latency_p50_ms"], summary["latency_p95_ms"]) == (
        0,
        None,
        None,
    )
    assert (summary["errors"], summary["cost_by_service"], summary["total_cost_usd"]) == (0, [], 0)


async def test_summary_period_must_be_at_least_an_hour(
    client: httpx.AsyncClient, admin: Person
) -> None:
    response = await client.get("/api/v1/analytics/summary?hours=0", headers=admin.headers)

    assert response.status_code == 422


async def test_dashboard_counts_each_window_top_tools_active_sessions_and_credits(
    client: httpx.AsyncClient, runtime: Runtime, admin: Person
) -> None:
    await insert_events(
        runtime,
        {"timestamp": ago(minutes=2), "tool_name": "alpha", "credits": 3, "response_time_ms": 10.0},
        {
            "timestamp": ago(minutes=30),
            "tool_name": "alpha",
            "credits": 4,
            "success": False,
            "response_time_ms": 30.0,
        },
        {"timestamp": ago(hours=5), "tool_name": "beta", "credits": 5, "response_time_ms": 50.0},
        {"timestamp": ago(days=2), "tool_name": "gamma", "credits": 100, "response_time_ms": 1.0},
    )
    async with transaction(runtime.sessions) as session:
        await session.execute(
            insert(ErrorLog),
            [
                {
                    "timestamp": ago(**d),
                    "error_type": "E",
                    "error_message": "m",
                    "resolved": False,
                    "error_metadata": {},
                }
                for d in ({"minutes": 1}, {"minutes": 45}, {"hours": 3}, {"days": 3})
            ],
        )
    await insert_sessions(
        runtime,
        {"session_id": "active", "last_activity_at": ago(minutes=1)},
        {"session_id": "ended", "last_activity_at": ago(minutes=1), "ended_at": ago(seconds=30)},
        {"session_id": "idle", "last_activity_at": ago(hours=1)},
    )

    board = await get_ok(client, "dashboard", admin.headers)

    windows = {name: board[name] for name in ("last_5_minutes", "last_hour", "last_day")}
    assert {n: w["calls"] for n, w in windows.items()} == {
        "last_5_minutes": 1,
        "last_hour": 2,
        "last_day": 3,
    }
    assert {n: w["failed"] for n, w in windows.items()} == {
        "last_5_minutes": 0,
        "last_hour": 1,
        "last_day": 1,
    }
    assert {n: w["errors"] for n, w in windows.items()} == {
        "last_5_minutes": 1,
        "last_hour": 2,
        "last_day": 3,
    }
    assert {n: w["credits_spent"] for n, w in windows.items()} == {
        "last_5_minutes": 3,
        "last_hour": 7,
        "last_day": 12,
    }
    assert {n: w["avg_latency_ms"] for n, w in windows.items()} == {
        "last_5_minutes": 10.0,
        "last_hour": 20.0,
        "last_day": 30.0,
    }
    assert [(t["tool"], t["calls"]) for t in board["top_tools"]] == [("alpha", 2), ("beta", 1)]
    assert board["active_sessions"] == 1
    assert board["credits_spent_today"] == 12


async def test_dashboard_of_an_empty_database_is_all_zeros(
    client: httpx.AsyncClient, admin: Person
) -> None:
    board = await get_ok(client, "dashboard", admin.headers)

    assert board["last_day"]["calls"] == 0
    assert board["last_day"]["avg_latency_ms"] is None
    assert (board["top_tools"], board["active_sessions"], board["credits_spent_today"]) == (
        [],
        0,
        0,
    )


async def test_top_tools_tell_an_average_of_zero_from_no_latency(
    client: httpx.AsyncClient, admin: Person
) -> None:
    events = [
        {"tool_name": "instant", "response_time_ms": 0},
        {"tool_name": "instant", "response_time_ms": 0},
        {"tool_name": "untimed"},
    ]
    await post_ok(client, "batch", {"events": events}, admin.headers)

    board = await get_ok(client, "dashboard", admin.headers)

    assert board["top_tools"] == [
        {"tool": "instant", "calls": 2, "avg_latency_ms": 0.0},
        {"tool": "untimed", "calls": 1, "avg_latency_ms": None},
    ]


OUTSIDE_UTC_CALENDAR = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]
"""Times that parse, but fall outside the years 1 to 9999 once in UTC."""


@pytest.mark.parametrize("moment", OUTSIDE_UTC_CALENDAR, ids=["before-year-1", "after-9999"])
@pytest.mark.parametrize("kind", ["events", "metrics", "errors", "costs", "sessions"])
async def test_time_range_outside_the_utc_calendar_is_refused(
    client: httpx.AsyncClient, admin: Person, kind: str, moment: str
) -> None:
    for name in ("start", "end"):
        response = await client.get(
            f"/api/v1/analytics/{kind}", params={name: moment}, headers=admin.headers
        )

        assert response.status_code == 422, (name, response.text)
        assert response.json()["detail"]["code"] == "validation_error"
        assert [e["loc"] for e in response.json()["detail"]["errors"]] == [["query", name]]


async def test_time_range_at_the_ends_of_the_utc_calendar_is_answered(
    client: httpx.AsyncClient, admin: Person
) -> None:
    for params in ({"start": "0001-01-01T00:00:00Z"}, {"end": "9999-12-31T23:59:59Z"}):
        response = await client.get(
            "/api/v1/analytics/events", params=params, headers=admin.headers
        )
        assert response.status_code == 200, (params, response.text)
