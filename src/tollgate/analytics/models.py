"""Seed 004's analytics tables: usage events, performance metrics, error logs, sessions and
cost tracking, indexed for time-range queries; and the hourly rollups kept after raw events
are pruned."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from tollgate.core.database import Base, UTCDateTime, utcnow


class UsageEvent(Base):
    """One tool call or request, from Tollgate's own traffic or posted by an MCP server."""

    __tablename__ = "usage_events"
    __table_args__ = (
        Index("ix_usage_events_timestamp", "timestamp"),
        Index("ix_usage_events_tool_timestamp", "tool_name", "timestamp"),
        Index("ix_usage_events_session", "session_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime, server_default=utcnow())
    session_id: Mapped[str | None] = mapped_column(String(128))
    event_type: Mapped[str] = mapped_column(String(64))
    tool_name: Mapped[str | None] = mapped_column(String(200))
    service: Mapped[str | None] = mapped_column(String(64))
    response_time_ms: Mapped[float | None] = mapped_column(Float)
    success: Mapped[bool] = mapped_column(Boolean, default=True)
    error_message: Mapped[str | None] = mapped_column(Text)
    credits: Mapped[int] = mapped_column(Integer, default=0)
    event_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)


class PerformanceMetric(Base):
    """A measured value at a moment, with tags to filter by."""

    __tablename__ = "performance_metrics"
    __table_args__ = (Index("ix_performance_metrics_name_timestamp", "metric_name", "timestamp"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime, server_default=utcnow())
    metric_name: Mapped[str] = mapped_column(String(128))
    metric_value: Mapped[float] = mapped_column(Float)
    metric_unit: Mapped[str | None] = mapped_column(String(32))
    tags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ErrorLog(Base):
    """An error to look at, resolved (with the time) once handled."""

    __tablename__ = "error_logs"
    __table_args__ = (
        Index("ix_error_logs_timestamp", "timestamp"),
        Index("ix_error_logs_resolved_timestamp", "resolved", "timestamp"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime, server_default=utcnow())
    error_type: Mapped[str] = mapped_column(String(128))
    error_message: Mapped[str] = mapped_column(Text)
    stack_trace: Mapped[str | None] = mapped_column(Text)
    session_id: Mapped[str | None] = mapped_column(String(128))
    tool_name: Mapped[str | None] = mapped_column(String(200))
    service: Mapped[str | None] = mapped_column(String(64))
    resolved: Mapped[bool] = mapped_column(Boolean, default=False)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by: Mapped[str | None] = mapped_column(String(320))
    error_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)


class AnalyticsSession(Base):
    """An MCP session (or a data connection): requests, errors and processing time."""

    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_last_activity", "last_activity_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[str] = mapped_column(String(128), unique=True)
    account_id: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=utcnow())
    last_activity_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=utcnow())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    total_requests: Mapped[int] = mapped_column(Integer, default=0)
    total_errors: Mapped[int] = mapped_column(Integer, default=0)
    total_processing_ms: Mapped[float] = mapped_column(Float, default=0.0)
    session_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)


class CostTracking(Base):
    """Spending on an external service (tokens, dollars)."""

    __tablename__ = "cost_tracking"
    __table_args__ = (Index("ix_cost_tracking_service_timestamp", "service_name", "timestamp"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime, server_default=utcnow())
    service_name: Mapped[str] = mapped_column(String(64))
    operation_type: Mapped[str | None] = mapped_column(String(64))
    tokens_used: Mapped[int | None] = mapped_column(Integer)
    cost_usd: Mapped[Decimal] = mapped_column(Numeric(14, 6))
    session_id: Mapped[str | None] = mapped_column(String(128))
    cost_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)


class HourlyRollup(Base):
    """Usage per hour and tool, kept after the raw events are pruned."""

    __tablename__ = "usage_hourly"
    __table_args__ = (UniqueConstraint("hour", "tool_name", name="uq_usage_hourly_hour_tool"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hour: Mapped[datetime] = mapped_column(UTCDateTime)
    tool_name: Mapped[str] = mapped_column(String(200))
    calls: Mapped[int] = mapped_column(Integer)
    errors: Mapped[int] = mapped_column(Integer)
    total_response_ms: Mapped[float] = mapped_column(Float)
    credits: Mapped[int] = mapped_column(Integer)
