"""Analytics: store records, query them, summarise a period, the live dashboard figures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Select, case, delete, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from tollgate.analytics.models import (
    AnalyticsSession,
    CostTracking,
    ErrorLog,
    HourlyRollup,
    PerformanceMetric,
    UsageEvent,
)
from tollgate.analytics.schemas import BatchIn, CostIn, ErrorIn, EventIn, MetricIn, Stored
from tollgate.core.database import Base, database_now
from tollgate.core.errors import NotFound
from tollgate.core.metrics import EVENTS_INGESTED

M = TypeVar("M", bound=Base)

DASHBOARD_WINDOWS = {"last_5_minutes": 5 * 60, "last_hour": 3600, "last_day": 86400}
"""The windows the dashboard reports, in seconds."""

ACTIVE_SESSION_SECONDS = 15 * 60
"""A session with activity this recent counts as active."""

TOP_TOOLS = 10


def _event_row(record: EventIn) -> dict[str, Any]:
    row = record.model_dump(exclude_none=True, exclude={"metadata"})
    return {**row, "event_metadata": record.metadata}


def _error_row(record: ErrorIn) -> dict[str, Any]:
    row = record.model_dump(exclude_none=True, exclude={"metadata"})
    return {**row, "error_metadata": record.metadata}


def _cost_row(record: CostIn) -> dict[str, Any]:
    row = record.model_dump(exclude_none=True, exclude={"metadata"})
    return {**row, "cost_metadata": record.metadata}


def _metric_row(record: MetricIn) -> dict[str, Any]:
    return record.model_dump(exclude_none=True)


async def _insert(session: AsyncSession, model: type[Base], rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    await session.execute(insert(model), rows)
    return len(rows)


async def store(session: AsyncSession, batch: BatchIn) -> Stored:
    """Store a validated batch, all in the caller's transaction."""
    stored = Stored(
        events=await _insert(session, UsageEvent, [_event_row(r) for r in batch.events]),
        metrics=await _insert(session, PerformanceMetric, [_metric_row(r) for r in batch.metrics]),
        errors=await _insert(session, ErrorLog, [_error_row(r) for r in batch.errors]),
        costs=await _insert(session, CostTracking, [_cost_row(r) for r in batch.costs]),
    )
    for kind, count in stored.model_dump().items():
        if count:
            EVENTS_INGESTED.labels(kind).inc(count)
    return stored


@dataclass(frozen=True)
class Window:
    """A time range; either end may be open."""

    start: datetime | None = None
    end: datetime | None = None


def _in_window(query: Select[Any], column: Any, window: Window) -> Select[Any]:
    if window.start is not None:
        query = query.where(column >= window.start)
    if window.end is not None:
        query = query.where(column < window.end)
    return query


async def page(
    session: AsyncSession, model: type[M], query: Select[Any], *, limit: int, offset: int
) -> tuple[int, Sequence[M]]:
    """Rows of ``query`` newest first, and how many match."""
    total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    rows = await session.execute(
        query.order_by(model.timestamp.desc(), model.id.desc()).limit(limit).offset(offset)  # type: ignore[attr-defined]
    )
    return int(total), rows.scalars().all()


def events_query(window: Window, **filters: Any) -> Select[Any]:
    """Usage events in ``window`` matching the given exact filters."""
    query = _in_window(select(UsageEvent), UsageEvent.timestamp, window)
    for name, value in filters.items():
        if value is not None:
            query = query.where(getattr(UsageEvent, name) == value)
    return query


def metrics_query(window: Window, metric_name: str | None) -> Select[Any]:
    """Metrics in ``window``, optionally of one name."""
    query = _in_window(select(PerformanceMetric), PerformanceMetric.timestamp, window)
    if metric_name:
        query = query.where(PerformanceMetric.metric_name == metric_name)
    return query


def errors_query(window: Window, **filters: Any) -> Select[Any]:
    """Error logs in ``window`` matching the given exact filters."""
    query = _in_window(select(ErrorLog), ErrorLog.timestamp, window)
    for name, value in filters.items():
        if value is not None:
            query = query.where(getattr(ErrorLog, name) == value)
    return query


def costs_query(window: Window, service_name: str | None) -> Select[Any]:
    """Cost entries in ``window``, optionally of one service."""
    query = _in_window(select(CostTracking), CostTracking.timestamp, window)
    if service_name:
        query = query.where(CostTracking.service_name == service_name)
    return query


async def sessions_page(
    session: AsyncSession, window: Window, *, limit: int, offset: int
) -> tuple[int, Sequence[AnalyticsSession]]:
    """Sessions active in ``window``, most recent activity first."""
    query = _in_window(select(AnalyticsSession), AnalyticsSession.last_activity_at, window)
    total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    rows = await session.execute(
        query.order_by(AnalyticsSession.last_activity_at.desc()).limit(limit).offset(offset)
    )
    return int(total), rows.scalars().all()


async def resolve_error(
    session: AsyncSession, error_id: int, resolved: bool, actor: str
) -> ErrorLog:
    """Mark an error resolved (now, by ``actor``) or open again."""
    error = await session.get(ErrorLog, error_id)
    if error is None:
        raise NotFound("Error log not found", code="error_not_found")
    error.resolved = resolved
    error.resolved_at = await database_now(session) if resolved else None
    error.resolved_by = actor if resolved else None
    await session.flush()
    return error


PER_MILLE = 1000
"""Percentiles are asked for in thousandths, so their ranks are exact integer arithmetic."""


async def _percentiles(
    session: AsyncSession, since: datetime, fractions: Sequence[float]
) -> list[float | None]:
    """Latency percentiles of events since ``since``: nearest rank, ``ceil(p * n)``.

    One sort in the database (a window function) serves every percentile asked for.
    """
    latency = UsageEvent.response_time_ms
    ranked = (
        select(
            latency.label("value"),
            func.row_number().over(order_by=latency).label("rank"),
            func.count().over().label("total"),
        )
        .where(UsageEvent.timestamp >= since, latency.is_not(None))
        .subquery()
    )
    wanted = {round(f * PER_MILLE) for f in fractions}
    rank_of = {
        p: (ranked.c.total * p + (PER_MILLE - 1)).self_group().op("/")(PER_MILLE) for p in wanted
    }
    rows = await session.execute(
        select(ranked.c.rank, ranked.c.total, ranked.c.value).where(
            or_(*(ranked.c.rank == expression for expression in rank_of.values()))
        )
    )
    by_rank = {int(rank): (int(total), float(value)) for rank, total, value in rows.all()}
    if not by_rank:
        return [None for _ in fractions]
    total = next(iter(by_rank.values()))[0]
    return [by_rank[max(1, -(-round(f * PER_MILLE) * total // PER_MILLE))][1] for f in fractions]


async def _totals(session: AsyncSession, since: datetime) -> dict[str, Any]:
    row = (
        await session.execute(
            select(
                func.count(UsageEvent.id),
                func.coalesce(func.sum(case((UsageEvent.success.is_(True), 1), else_=0)), 0),
                func.avg(UsageEvent.response_time_ms),
                func.coalesce(func.sum(UsageEvent.credits), 0),
            ).where(UsageEvent.timestamp >= since)
        )
    ).one()
    calls, successful = int(row[0]), int(row[1])
    return {
        "calls": calls,
        "successful": successful,
        "failed": calls - successful,
        "success_rate": round(successful / calls * 100, 2) if calls else 100.0,
        "avg_latency_ms": round(float(row[2]), 3) if row[2] is not None else None,
        "credits_spent": int(row[3]),
    }


async def _top_tools(session: AsyncSession, since: datetime) -> list[dict[str, Any]]:
    rows = await session.execute(
        select(
            UsageEvent.tool_name, func.count().label("calls"), func.avg(UsageEvent.response_time_ms)
        )
        .where(UsageEvent.timestamp >= since, UsageEvent.tool_name.is_not(None))
        .group_by(UsageEvent.tool_name)
        .order_by(func.count().desc(), UsageEvent.tool_name)
        .limit(TOP_TOOLS)
    )
    return [
        {
            "tool": tool,
            "calls": calls,
            "avg_latency_ms": round(float(avg), 3) if avg is not None else None,
        }
        for tool, calls, avg in rows.all()
    ]


async def summary(session: AsyncSession, hours: int) -> dict[str, Any]:
    """Totals, success rate, latency p50/p95, errors and cost by service over ``hours``."""
    now = await database_now(session)
    since = now - timedelta(hours=hours)
    p50, p95 = await _percentiles(session, since, [0.5, 0.95])
    errors = (
        await session.execute(
            select(
                func.count(ErrorLog.id),
                func.coalesce(func.sum(case((ErrorLog.resolved.is_(False), 1), else_=0)), 0),
            ).where(ErrorLog.timestamp >= since)
        )
    ).one()
    costs = await session.execute(
        select(
            CostTracking.service_name,
            func.coalesce(func.sum(CostTracking.cost_usd), 0),
            func.coalesce(func.sum(CostTracking.tokens_used), 0),
        )
        .where(CostTracking.timestamp >= since)
        .group_by(CostTracking.service_name)
        .order_by(CostTracking.service_name)
    )
    by_service: list[dict[str, Any]] = [
        {"service": name, "cost_usd": float(cost), "tokens_used": int(tokens or 0)}
        for name, cost, tokens in costs.all()
    ]
    total_cost = sum(float(entry["cost_usd"]) for entry in by_service)
    return {
        "period_hours": hours,
        "start": since,
        "end": now,
        **await _totals(session, since),
        "latency_p50_ms": p50,
        "latency_p95_ms": p95,
        "errors": int(errors[0]),
        "unresolved_errors": int(errors[1]),
        "cost_by_service": by_service,
        "total_cost_usd": round(total_cost, 6),
        "top_tools": await _top_tools(session, since),
    }


async def dashboard(session: AsyncSession) -> dict[str, Any]:
    """Calls, errors and latency over the last 5 minutes, hour and day; top tools; active
    sessions; credits spent."""
    now = await database_now(session)
    windows = {}
    for name, seconds in DASHBOARD_WINDOWS.items():
        since = now - timedelta(seconds=seconds)
        totals = await _totals(session, since)
        errors = (
            await session.execute(
                select(func.count(ErrorLog.id)).where(ErrorLog.timestamp >= since)
            )
        ).scalar_one()
        windows[name] = {**totals, "errors": int(errors)}
    active = (
        await session.execute(
            select(func.count(AnalyticsSession.id)).where(
                AnalyticsSession.last_activity_at
                >= now - timedelta(seconds=ACTIVE_SESSION_SECONDS),
                AnalyticsSession.ended_at.is_(None),
            )
        )
    ).scalar_one()
    return {
        "generated_at": now,
        **windows,
        "top_tools": await _top_tools(session, now - timedelta(days=1)),
        "active_sessions": int(active),
        "credits_spent_today": windows["last_day"]["credits_spent"],
    }


async def roll_up_and_prune(session: AsyncSession, retention_days: int) -> int:
    """Keep hourly rollups of raw events older than the retention, then delete those events.

    Idempotent: an hour's rollup is written when its raw events are deleted, in one
    transaction, so running it twice (or in two processes) counts nothing twice.
    """
    cutoff = (await database_now(session) - timedelta(days=retention_days)).replace(
        minute=0, second=0, microsecond=0
    )
    old = select(UsageEvent).where(UsageEvent.timestamp < cutoff)
    rows = (
        await session.execute(
            old.with_only_columns(
                UsageEvent.timestamp,
                UsageEvent.tool_name,
                UsageEvent.success,
                UsageEvent.response_time_ms,
                UsageEvent.credits,
            )
        )
    ).all()
    if not rows:
        return 0
    buckets: dict[tuple[datetime, str], _Bucket] = {}
    for timestamp, tool, success, latency, credits in rows:
        key = (timestamp.replace(minute=0, second=0, microsecond=0), tool or "-")
        buckets.setdefault(key, _Bucket()).add(success, latency, credits)
    for (hour, tool), bucket in buckets.items():
        await _merge_rollup(session, hour, tool, bucket)
    await session.execute(delete(UsageEvent).where(UsageEvent.timestamp < cutoff))
    await session.flush()
    return len(rows)


@dataclass
class _Bucket:
    calls: int = 0
    errors: int = 0
    total_ms: float = 0.0
    credits: int = 0

    def add(self, success: bool, latency: float | None, credits: int | None) -> None:
        self.calls += 1
        self.errors += 0 if success else 1
        self.total_ms += latency or 0.0
        self.credits += credits or 0


async def _merge_rollup(session: AsyncSession, hour: datetime, tool: str, bucket: _Bucket) -> None:
    query = select(HourlyRollup).where(HourlyRollup.hour == hour, HourlyRollup.tool_name == tool)
    existing = (await session.execute(query)).scalar_one_or_none()
    if existing is None:
        session.add(
            HourlyRollup(
                hour=hour,
                tool_name=tool,
                calls=bucket.calls,
                errors=bucket.errors,
                total_response_ms=bucket.total_ms,
                credits=bucket.credits,
            )
        )
        return
    existing.calls += bucket.calls
    existing.errors += bucket.errors
    existing.total_response_ms += bucket.total_ms
    existing.credits += bucket.credits
