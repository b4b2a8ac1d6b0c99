"""Seed 004's analytics API, the live feed, and Prometheus ``/metrics``."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response, WebSocket
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tollgate.analytics import service
from tollgate.analytics.ingest_auth import Ingestor
from tollgate.analytics.live import serve_live
from tollgate.analytics.models import CostTracking, ErrorLog, PerformanceMetric, UsageEvent
from tollgate.analytics.recorder import LIVE_CHANNEL, live_message
from tollgate.analytics.schemas import (
    BatchIn,
    CostIn,
    CostOut,
    ErrorIn,
    ErrorOut,
    ErrorResolve,
    EventIn,
    EventOut,
    MetricIn,
    MetricOut,
    Page,
    SessionOut,
    Stored,
)
from tollgate.core.clock import UTCMoment
from tollgate.core.database import after_commit
from tollgate.core.deps import PageLimit, PageOffset, PathId, RuntimeDep, SessionDep
from tollgate.core.metrics import REGISTRY
from tollgate.identity.deps import require
from tollgate.identity.models import User

router = APIRouter(prefix="/api/v1/analytics", tags=["analytics"])
metrics_router = APIRouter(tags=["metrics"])

Reader = Annotated[User, Depends(require("analytics.read"))]
Writer = Annotated[User, Depends(require("analytics.write"))]
Start = Annotated[UTCMoment | None, Query(description="From this time (inclusive)")]
End = Annotated[UTCMoment | None, Query(description="Until this time (exclusive)")]
Hours = Annotated[int, Query(ge=1, le=24 * 366, description="Period in hours")]
Filter = Annotated[str | None, Query(max_length=200)]


async def _store(session: SessionDep, runtime: RuntimeDep, batch: BatchIn) -> Stored:
    stored = await service.store(session, batch)
    messages = [live_message("event", e.model_dump(mode="json")) for e in batch.events]
    messages += [live_message("error", e.model_dump(mode="json")) for e in batch.errors]

    async def publish() -> None:
        for message in messages:
            await runtime.cache.publish(LIVE_CHANNEL, message)

    after_commit(session, publish)
    return stored


@router.post("/events", response_model=Stored, status_code=201)
async def create_event(
    body: EventIn, _: Ingestor, session: SessionDep, runtime: RuntimeDep
) -> Stored:
    """Store a usage event. Admin JWT, ``ingest`` token, or a signed request."""
    return await _store(session, runtime, BatchIn(events=[body]))


@router.post("/metrics", response_model=Stored, status_code=201)
async def create_metric(
    body: MetricIn, _: Ingestor, session: SessionDep, runtime: RuntimeDep
) -> Stored:
    """Store a performance metric. Admin JWT, ``ingest`` token, or a signed request."""
    return await _store(session, runtime, BatchIn(metrics=[body]))


@router.post("/errors", response_model=Stored, status_code=201)
async def create_error(
    body: ErrorIn, _: Ingestor, session: SessionDep, runtime: RuntimeDep
) -> Stored:
    """Store an error log. Admin JWT, ``ingest`` token, or a signed request."""
    return await _store(session, runtime, BatchIn(errors=[body]))


@router.post("/costs", response_model=Stored, status_code=201)
async def create_cost(
    body: CostIn, _: Ingestor, session: SessionDep, runtime: RuntimeDep
) -> Stored:
    """Store a cost entry. Admin JWT, ``ingest`` token, or a signed request."""
    return await _store(session, runtime, BatchIn(costs=[body]))


@router.post("/batch", response_model=Stored, status_code=201)
async def create_batch(
    body: BatchIn, _: Ingestor, session: SessionDep, runtime: RuntimeDep
) -> Stored:
    """Store many records at once: a bad record is reported by its index (in the
    validation error's ``loc``) and nothing of the batch is stored."""
    return await _store(session, runtime, body)


def _page(total: int, items: list[Any]) -> Page:
    return Page(total=total, items=items)


@router.get("/events", response_model=Page)
async def list_events(
    _: Reader,
    session: SessionDep,
    start: Start = None,
    end: End = None,
    tool_name: Filter = None,
    session_id: Filter = None,
    event_type: Filter = None,
    service_name: Annotated[str | None, Query(alias="service", max_length=64)] = None,
    success: bool | None = None,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
) -> Page:
    """Usage events, newest first. Needs ``analytics.read``."""
    query = service.events_query(
        service.Window(start, end),
        tool_name=tool_name,
        session_id=session_id,
        event_type=event_type,
        service=service_name,
        success=success,
    )
    total, rows = await service.page(session, UsageEvent, query, limit=limit, offset=offset)
    return _page(total, [EventOut.model_validate(r) for r in rows])


@router.get("/metrics", response_model=Page)
async def list_metrics(
    _: Reader,
    session: SessionDep,
    start: Start = None,
    end: End = None,
    metric_name: Filter = None,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
) -> Page:
    """Performance metrics, newest first. Needs ``analytics.read``."""
    query = service.metrics_query(service.Window(start, end), metric_name)
    total, rows = await service.page(session, PerformanceMetric, query, limit=limit, offset=offset)
    return _page(total, [MetricOut.model_validate(r) for r in rows])


@router.get("/errors", response_model=Page)
async def list_errors(
    _: Reader,
    session: SessionDep,
    start: Start = None,
    end: End = None,
    error_type: Filter = None,
    tool_name: Filter = None,
    session_id: Filter = None,
    resolved: bool | None = None,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
) -> Page:
    """Error logs, newest first. Needs ``analytics.read``."""
    query = service.errors_query(
        service.Window(start, end),
        error_type=error_type,
        tool_name=tool_name,
        session_id=session_id,
        resolved=resolved,
    )
    total, rows = await service.page(session, ErrorLog, query, limit=limit, offset=offset)
    return _page(total, [ErrorOut.model_validate(r) for r in rows])


@router.patch("/errors/{error_id}", response_model=ErrorOut)
async def resolve_error(
    error_id: PathId, body: ErrorResolve, admin: Writer, session: SessionDep
) -> ErrorOut:
    """Resolve an error (or reopen it). Needs ``analytics.write``."""
    return ErrorOut.model_validate(
        await service.resolve_error(session, error_id, body.resolved, admin.email)
    )


@router.get("/costs", response_model=Page)
async def list_costs(
    _: Reader,
    session: SessionDep,
    start: Start = None,
    end: End = None,
    service_name: Annotated[str | None, Query(alias="service", max_length=64)] = None,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
) -> Page:
    """Cost entries, newest first. Needs ``analytics.read``."""
    query = service.costs_query(service.Window(start, end), service_name)
    total, rows = await service.page(session, CostTracking, query, limit=limit, offset=offset)
    return _page(total, [CostOut.model_validate(r) for r in rows])


@router.get("/sessions", response_model=Page)
async def list_sessions(
    _: Reader,
    session: SessionDep,
    start: Start = None,
    end: End = None,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
) -> Page:
    """Sessions by last activity. Needs ``analytics.read``."""
    total, rows = await service.sessions_page(
        session, service.Window(start, end), limit=limit, offset=offset
    )
    return _page(total, [SessionOut.model_validate(r) for r in rows])


@router.get("/summary")
async def summary(_: Reader, session: SessionDep, hours: Hours = 24) -> dict[str, Any]:
    """Totals, success rate, latency p50/p95, errors, cost by service. Needs ``analytics.read``."""
    return await service.summary(session, hours)


@router.get("/dashboard")
async def dashboard(_: Reader, session: SessionDep) -> dict[str, Any]:
    """Calls, errors and latency over 5 minutes, an hour and a day; top tools; active
    sessions; credits spent. Needs ``analytics.read``."""
    return await service.dashboard(session)


@router.websocket("/live")
async def live(websocket: WebSocket) -> None:
    """New events and per-second aggregates, from every process. Admins: a JWT in
    ``Authorization`` or ``?token=``."""
    await serve_live(websocket)


@metrics_router.get("/metrics", include_in_schema=False)
async def prometheus_metrics() -> Response:
    """Prometheus metrics (``tollgate_*``, no per-user labels). Public, like any scrape
    target: restrict it at the network edge."""
    return Response(
        await asyncio.to_thread(generate_latest, REGISTRY), media_type=CONTENT_TYPE_LATEST
    )
