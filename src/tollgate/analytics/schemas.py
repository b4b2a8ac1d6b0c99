"""Analytics records as posted and as returned (seed 004's fields)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from tollgate.core.clock import UTCMoment

Short = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00]*$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00]*$")]
"""Types and service names: their columns hold 64 characters."""
Text = Annotated[str, StringConstraints(max_length=20000, pattern=r"^[^\x00]*$")]
ToolName = Annotated[str, StringConstraints(max_length=200, pattern=r"^[^\x00]*$")]
Metadata = Annotated[dict[str, Any], Field(max_length=100)]

MAX_BATCH = 5000
"""Records per kind in one batch request: large batches, bounded memory."""


class EventIn(BaseModel):
    """A usage event to store."""

    model_config = ConfigDict(extra="forbid")

    timestamp: UTCMoment | None = None
    session_id: Short | None = None
    event_type: Name = "tool_call"
    tool_name: Annotated[str, StringConstraints(max_length=200, pattern=r"^[^\x00]*$")] | None = (
        None
    )
    service: Name | None = None
    response_time_ms: float | None = Field(default=None, ge=0, le=86_400_000)
    success: bool = True
    error_message: Text | None = None
    metadata: Metadata = Field(default_factory=dict)


class MetricIn(BaseModel):
    """A performance metric to store."""

    model_config = ConfigDict(extra="forbid")

    timestamp: UTCMoment | None = None
    metric_name: Short
    metric_value: float = Field(allow_inf_nan=False, ge=-1e15, le=1e15)
    metric_unit: Annotated[str, StringConstraints(max_length=32)] | None = None
    tags: Metadata = Field(default_factory=dict)


class ErrorIn(BaseModel):
    """An error log to store."""

    model_config = ConfigDict(extra="forbid")

    timestamp: UTCMoment | None = None
    error_type: Short
    error_message: Text
    stack_trace: Text | None = None
    session_id: Short | None = None
    tool_name: Annotated[str, StringConstraints(max_length=200, pattern=r"^[^\x00]*$")] | None = (
        None
    )
    service: Name | None = None
    metadata: Metadata = Field(default_factory=dict)


class CostIn(BaseModel):
    """A cost entry to store."""

    model_config = ConfigDict(extra="forbid")

    timestamp: UTCMoment | None = None
    service_name: Name
    operation_type: Name | None = None
    tokens_used: int | None = Field(default=None, ge=0, le=2**31 - 1)
    cost_usd: Decimal = Field(ge=0, le=10**8, max_digits=14, decimal_places=6)
    session_id: Short | None = None
    metadata: Metadata = Field(default_factory=dict)


class BatchIn(BaseModel):
    """Many records in one request: all are stored, or none."""

    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(default_factory=list, max_length=MAX_BATCH)
    metrics: list[MetricIn] = Field(default_factory=list, max_length=MAX_BATCH)
    errors: list[ErrorIn] = Field(default_factory=list, max_length=MAX_BATCH)
    costs: list[CostIn] = Field(default_factory=list, max_length=MAX_BATCH)


class Stored(BaseModel):
    """How many records were stored, by kind."""

    events: int = 0
    metrics: int = 0
    errors: int = 0
    costs: int = 0


class EventOut(BaseModel):
    """A stored usage event."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    timestamp: datetime
    session_id: str | None
    event_type: str
    tool_name: str | None
    service: str | None
    response_time_ms: float | None
    success: bool
    error_message: str | None
    credits: int
    metadata: dict[str, Any] = Field(validation_alias="event_metadata")


class MetricOut(BaseModel):
    """A stored metric."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    timestamp: datetime
    metric_name: str
    metric_value: float
    metric_unit: str | None
    tags: dict[str, Any]


class ErrorOut(BaseModel):
    """A stored error log."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    timestamp: datetime
    error_type: str
    error_message: str
    stack_trace: str | None
    session_id: str | None
    tool_name: str | None
    service: str | None
    resolved: bool
    resolved_at: datetime | None
    resolved_by: str | None
    metadata: dict[str, Any] = Field(validation_alias="error_metadata")


class CostOut(BaseModel):
    """A stored cost entry."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    timestamp: datetime
    service_name: str
    operation_type: str | None
    tokens_used: int | None
    cost_usd: Decimal
    session_id: str | None
    metadata: dict[str, Any] = Field(validation_alias="cost_metadata")


class SessionOut(BaseModel):
    """A session's totals."""

    model_config = ConfigDict(from_attributes=True)

    session_id: str
    account_id: int | None
    started_at: datetime
    last_activity_at: datetime
    ended_at: datetime | None
    total_requests: int
    total_errors: int
    total_processing_ms: float


class Page(BaseModel):
    """A page of records and how many match."""

    total: int
    items: list[Any]


class ErrorResolve(BaseModel):
    """Resolve (or reopen) an error."""

    model_config = ConfigDict(extra="forbid")

    resolved: bool = True
