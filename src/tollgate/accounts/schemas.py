"""Bodies of the MCP account routes (seed 000's response models) and the admin routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


class MCPAccountInfo(BaseModel):
    """An MCP account as its owner sees it: never the full key."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    user_email: str
    display_name: str | None
    mcp_key_prefix: str
    credits_balance: int
    credits_tier: str
    credits_monthly_allocation: int
    is_active: bool
    last_connected_at: datetime | None
    total_tool_calls: int
    total_credits_used: int
    stripe_subscription_status: str | None
    created_at: datetime


class MCPEnableResponse(BaseModel):
    """The answer to enabling MCP: the full key, this once."""

    success: bool
    message: str
    mcp_api_key: str
    account: MCPAccountInfo


class MCPRegenerateResponse(BaseModel):
    """The answer to regenerating the key: the new full key, this once."""

    success: bool
    message: str
    mcp_api_key: str
    mcp_key_prefix: str


class ToolCallRecord(BaseModel):
    """One tool call in the usage history."""

    model_config = ConfigDict(from_attributes=True)

    request_id: str
    tool_name: str
    credits_cost: int
    credits_charged: int
    success: bool
    is_backend_error: bool
    error_code: str | None
    latency_ms: float | None
    created_at: datetime


class UsageHistoryResponse(BaseModel):
    """A page of the caller's tool calls."""

    total_calls: int
    period_days: int
    tool_calls: list[ToolCallRecord]


class ToolUsage(BaseModel):
    """Calls and credits of one tool this month."""

    tool: str
    calls: int
    credits: int


class UsageSummaryResponse(BaseModel):
    """Today's and this month's usage (UTC)."""

    credits_balance: int
    credits_tier: str
    credits_monthly_allocation: int
    credits_used_today: int
    credits_used_this_month: int
    total_calls_today: int
    total_calls_this_month: int
    success_rate: float
    avg_latency_ms: float
    tool_breakdown: list[ToolUsage]
    days_until_refill: int


class CreditAdjustment(BaseModel):
    """An operator's change of an account's balance."""

    model_config = ConfigDict(extra="forbid")

    amount: int = Field(ge=-1_000_000_000, le=1_000_000_000)
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
    idempotency_key: (
        Annotated[str, StringConstraints(min_length=1, max_length=150, pattern=r"^[\w.:-]+$")]
        | None
    ) = None


class LedgerEntry(BaseModel):
    """One ledger row."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    transaction_type: str
    amount: int
    balance_before: int
    balance_after: int
    reference_type: str | None
    reference_id: str | None
    description: str | None
    created_by: str | None
    created_at: datetime


class AdjustmentResponse(BaseModel):
    """The result of an adjustment."""

    amount: int
    balance_after: int
    replayed: bool


class LedgerPage(BaseModel):
    """A page of an account's ledger, newest first."""

    total: int
    entries: list[LedgerEntry]
