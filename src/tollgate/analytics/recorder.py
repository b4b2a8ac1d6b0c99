"""Tollgate's own traffic into analytics: each call event becomes a usage event and a latency
metric, each backend error an error log, each MCP session a session row; written in batches
off the request path, and published on the live feed."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import insert
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from tollgate.analytics.models import (
    AnalyticsSession,
    CostTracking,
    ErrorLog,
    PerformanceMetric,
    UsageEvent,
)
from tollgate.core import rawsql
from tollgate.core.batching import BatchWriter
from tollgate.core.cache import Cache
from tollgate.core.database import SyncWrites, table_of
from tollgate.core.metrics import CREDITS_CHARGED, TOOL_CALL_ERRORS, TOOL_CALL_SECONDS, TOOL_CALLS

logger = logging.getLogger(__name__)

LIVE_CHANNEL = "analytics:live"
"""Pub/sub channel of the live feed (through the cache, so every process sees every event)."""

BATCH_SIZE = 500
BATCH_WINDOW_SECONDS = 0.05
"""Events are written in batches of up to this many, gathered for at most this long."""

LATENCY_METRIC = "tool_call_latency_ms"

CANCELLED_ERROR_CODE = "cancelled"
"""The error code of a call its client cancelled: neither the tool's failure nor a backend's."""

TOOL_NAME_LENGTH = 200
"""What the ``tool_name`` columns hold: a longer name (a data request names its model freely)
is cut to fit, or the whole batch would fail where the database enforces lengths."""


class CallEvent(Protocol):
    """What the gateway reports about a call (``tollgate.core.events.ToolCallEvent``)."""

    @property
    def request_id(self) -> str: ...

    @property
    def account_id(self) -> int: ...

    @property
    def user_id(self) -> int: ...

    @property
    def upstream(self) -> str: ...

    @property
    def tool(self) -> str: ...

    @property
    def credits(self) -> int: ...

    @property
    def success(self) -> bool: ...

    @property
    def is_backend_error(self) -> bool: ...

    @property
    def error_code(self) -> str | None: ...

    @property
    def latency_ms(self) -> float: ...

    @property
    def protocol_version(self) -> str | None: ...

    @property
    def session_id(self) -> str | None: ...


class ModelCallEvent(Protocol):
    """What the chat reports about one LLM call (``tollgate.chat.service.LlmCall``)."""

    @property
    def user_id(self) -> int: ...

    @property
    def model(self) -> str: ...

    @property
    def provider(self) -> str: ...

    @property
    def input_tokens(self) -> int: ...

    @property
    def output_tokens(self) -> int: ...

    @property
    def cost_usd(self) -> Decimal: ...


LLM_EVENT_TYPE = "llm_call"
"""The ``event_type`` of a chat's model call in the usage events (its cost is in costs)."""


def live_message(kind: str, record: dict[str, Any]) -> str:
    """The JSON the live feed carries for one record."""
    return json.dumps({"type": kind, **record}, default=str)


class Recorder:
    """Receives call events (never waiting) and writes them in batches."""

    def __init__(self, writes: SyncWrites, cache: Cache) -> None:
        self._writes = writes
        self._cache = cache
        self._writer: BatchWriter[tuple[CallEvent, datetime]] = BatchWriter(
            "analytics-recorder", self._write, size=BATCH_SIZE, window=BATCH_WINDOW_SECONDS
        )
        self.start = self._writer.start
        self.flush = self._writer.flush
        self._model_calls: set[asyncio.Task[None]] = set()

    async def stop(self) -> None:
        """Write what is queued (call events and model calls), then stop."""
        if self._model_calls:
            await asyncio.gather(*self._model_calls, return_exceptions=True)
        await self._writer.stop()

    def observe(self, event: CallEvent) -> None:
        """The gateway's observer hook: count it for Prometheus and queue it."""
        if event.error_code == CANCELLED_ERROR_CODE:
            kind, failure = "cancelled", "cancelled"
        else:
            kind = "backend" if event.is_backend_error else "tool"
            failure = f"{kind}_error"
        TOOL_CALLS.labels(event.upstream, event.tool, "ok" if event.success else failure).inc()
        TOOL_CALL_SECONDS.labels(event.upstream, event.tool).observe(event.latency_ms / 1000)
        if not event.success:
            TOOL_CALL_ERRORS.labels(event.upstream, event.tool, kind).inc()
        if event.credits:
            CREDITS_CHARGED.inc(event.credits)
        self._writer.submit((event, datetime.now(UTC)))

    def observe_model_call(self, event: ModelCallEvent) -> None:
        """The chat's hook: one model call becomes a cost record and a usage event, written
        at once off the request path (model calls are seconds apart, not a hot path)."""
        at = datetime.now(UTC)
        usage = {
            "timestamp": at,
            "event_type": LLM_EVENT_TYPE,
            "tool_name": event.model[:TOOL_NAME_LENGTH],
            "service": event.provider[:64],
            "success": True,
            "credits": 0,
            "event_metadata": {
                "user_id": event.user_id,
                "input_tokens": event.input_tokens,
                "output_tokens": event.output_tokens,
            },
        }
        cost = {
            "timestamp": at,
            "service_name": event.provider[:64],
            "operation_type": LLM_EVENT_TYPE,
            "tokens_used": event.input_tokens + event.output_tokens,
            "cost_usd": event.cost_usd,
            "cost_metadata": {
                "model": event.model,
                "user_id": event.user_id,
                "input_tokens": event.input_tokens,
                "output_tokens": event.output_tokens,
            },
        }
        task = asyncio.get_running_loop().create_task(self._write_model_call(usage, cost))
        self._model_calls.add(task)
        task.add_done_callback(self._model_calls.discard)

    async def _write_model_call(self, usage: dict[str, Any], cost: dict[str, Any]) -> None:
        def write(session: Session) -> None:
            session.execute(insert(UsageEvent), [usage])
            session.execute(insert(CostTracking), [cost])

        try:
            await self._writes.run(write)
            await self._cache.publish(LIVE_CHANNEL, _live_event(usage))
        except Exception:
            logger.exception("recording a model call failed")

    async def _write(self, batch: list[tuple[CallEvent, datetime]]) -> None:
        events = [_usage_row(event, at) for event, at in batch]
        await self._writes.run_steps(lambda dialect: _write_rows(dialect, batch, events))
        await self._cache.publish_many(LIVE_CHANNEL, [_live_event(row) for row in events])


def _write_rows(
    dialect: Dialect, batch: list[tuple[CallEvent, datetime]], events: list[dict[str, Any]]
) -> rawsql.Steps[None]:
    """A batch's usage events, latency metrics, errors and session counters, in one
    transaction (run through :meth:`SyncWrites.run_steps`)."""
    sql = _batch_sql(dialect)
    yield rawsql.RunMany(sql.usage, [_renamed(row, "event_metadata") for row in events])
    yield rawsql.RunMany(sql.metrics, [_metric_row(e, at) for e, at in batch])
    errors = [_error_row(e, at) for e, at in batch if e.is_backend_error]
    yield rawsql.RunMany(sql.errors, [_renamed(row, "error_metadata") for row in errors])
    yield rawsql.RunMany(sql.sessions, _session_totals(batch))


def _renamed(row: dict[str, Any], metadata_key: str) -> dict[str, Any]:
    """A row keyed by column names (the metadata attribute's column is ``metadata``)."""
    renamed = dict(row)
    renamed["metadata"] = renamed.pop(metadata_key)
    return renamed


@dataclass(frozen=True)
class _BatchSql:
    usage: rawsql.Statement
    metrics: rawsql.Statement
    errors: rawsql.Statement
    sessions: rawsql.Statement


_COUNT_SESSION = (
    "INSERT INTO sessions (session_id, account_id, started_at, last_activity_at, "
    "total_requests, total_errors, total_processing_ms, metadata) VALUES (:session_id, "
    ":account_id, :started_at, :last_activity_at, :total_requests, :total_errors, "
    ":total_processing_ms, :metadata) ON CONFLICT (session_id) DO UPDATE SET "
    "total_requests = sessions.total_requests + excluded.total_requests, "
    "total_errors = sessions.total_errors + excluded.total_errors, "
    "total_processing_ms = sessions.total_processing_ms + excluded.total_processing_ms, "
    "last_activity_at = excluded.last_activity_at"
)
"""A session's counters: created by its first batch, added to by the next ones."""


@functools.cache
def _batch_sql(dialect: Dialect) -> _BatchSql:
    """The recorder's statements for ``dialect``, built once (see ``core.rawsql``)."""
    usage, metrics, errors, sessions = (
        table_of(model) for model in (UsageEvent, PerformanceMetric, ErrorLog, AnalyticsSession)
    )
    session_columns = (
        "started_at",
        "last_activity_at",
        "metadata",
    )
    return _BatchSql(
        rawsql.insert(usage, _USAGE_COLUMNS, dialect),
        rawsql.insert(metrics, _METRIC_COLUMNS, dialect),
        rawsql.insert(errors, _ERROR_COLUMNS, dialect),
        rawsql.statement(
            _COUNT_SESSION, dialect, rawsql.converters(sessions, session_columns, dialect)
        ),
    )


_USAGE_COLUMNS = (
    "timestamp",
    "session_id",
    "event_type",
    "tool_name",
    "service",
    "response_time_ms",
    "success",
    "error_message",
    "credits",
    "metadata",
)
_METRIC_COLUMNS = ("timestamp", "metric_name", "metric_value", "metric_unit", "tags")
_ERROR_COLUMNS = (
    "timestamp",
    "error_type",
    "error_message",
    "session_id",
    "tool_name",
    "service",
    "resolved",
    "metadata",
)


def _live_event(row: dict[str, Any]) -> str:
    """The live feed's message for one usage row."""
    record = {k: v for k, v in row.items() if k != "event_metadata"}
    record["metadata"] = row["event_metadata"]  # the field's name in the API
    return live_message("event", record)


def _usage_row(event: CallEvent, at: datetime) -> dict[str, Any]:
    return {
        "timestamp": at,
        "session_id": event.session_id,
        "event_type": "tool_call" if event.protocol_version != "ws" else "data_request",
        "tool_name": event.tool[:TOOL_NAME_LENGTH],
        "service": event.upstream,
        "response_time_ms": round(event.latency_ms, 3),
        "success": event.success,
        "error_message": event.error_code,
        "credits": event.credits,
        "event_metadata": {
            "request_id": event.request_id,
            "protocol_version": event.protocol_version,
            "backend_error": event.is_backend_error,
        },
    }


def _metric_row(event: CallEvent, at: datetime) -> dict[str, Any]:
    return {
        "timestamp": at,
        "metric_name": LATENCY_METRIC,
        "metric_value": round(event.latency_ms, 3),
        "metric_unit": "ms",
        "tags": {"upstream": event.upstream, "tool": event.tool},
    }


def _error_row(event: CallEvent, at: datetime) -> dict[str, Any]:
    return {
        "timestamp": at,
        "error_type": event.error_code or "backend_error",
        "error_message": f"{event.tool} failed upstream ({event.error_code})",
        "session_id": event.session_id,
        "tool_name": event.tool[:TOOL_NAME_LENGTH],
        "service": event.upstream,
        "resolved": False,
        "error_metadata": {"request_id": event.request_id},
    }


def _session_totals(batch: list[tuple[CallEvent, datetime]]) -> list[dict[str, Any]]:
    """Each session's counters in a batch: requests, errors, time, first and last call."""
    totals: dict[str, dict[str, Any]] = {}
    for event, at in batch:
        if not event.session_id:
            continue
        entry = totals.get(event.session_id)
        if entry is None:
            entry = totals[event.session_id] = {
                "session_id": event.session_id,
                "account_id": event.account_id or None,
                "started_at": at,
                "total_requests": 0,
                "total_errors": 0,
                "total_processing_ms": 0.0,
                "metadata": {},
            }
        entry["total_requests"] += 1
        entry["total_errors"] += 0 if event.success else 1
        entry["total_processing_ms"] += event.latency_ms
        entry["last_activity_at"] = at
    return list(totals.values())
