"""MCP accounts, the credits ledger, tool-call records, processed billing events and the
credits granted per billing period."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from tollgate.core.database import Base, UTCDateTime, utcnow


class TransactionType(enum.StrEnum):
    """Why a ledger row moved credits."""

    MONTHLY_REFILL = "monthly_refill"
    TOOL_CALL = "tool_call"
    REFUND = "refund"
    PURCHASE = "purchase"
    ADJUSTMENT = "adjustment"


class CallStatus(enum.StrEnum):
    """Where a tool call stands: charged and waiting for its outcome, settled, or cancelled."""

    PENDING = "pending"
    SETTLED = "settled"
    CANCELLED = "cancelled"
    """The client cancelled the call before its answer: refunded."""


class McpAccount(Base):
    """A user's MCP account: the key, the credits, the counters."""

    __tablename__ = "mcp_accounts"
    __table_args__ = (
        CheckConstraint("credits_balance >= 0", name="credits_balance_not_negative"),
        CheckConstraint("credits_monthly_allocation >= 0", name="allocation_not_negative"),
        CheckConstraint(
            "credits_held >= 0 AND credits_held <= credits_balance",
            name="credits_held_within_balance",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    user_email: Mapped[str] = mapped_column(String(320), index=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    mcp_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    mcp_key_prefix: Mapped[str] = mapped_column(String(12))
    credits_balance: Mapped[int] = mapped_column(Integer, default=0)
    credits_held: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Part of the balance that processes drew to reserve calls in memory (``credit_holds``):
    spendable only by them, still the account's until a call is charged."""
    credits_tier: Mapped[str] = mapped_column(String(32), default="free")
    credits_monthly_allocation: Mapped[int] = mapped_column(Integer, default=0)
    credits_last_refill: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refill_period: Mapped[str | None] = mapped_column(String(7))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    last_connected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    total_tool_calls: Mapped[int] = mapped_column(Integer, default=0)
    total_credits_used: Mapped[int] = mapped_column(BigInteger, default=0)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), index=True)
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255))
    stripe_subscription_status: Mapped[str | None] = mapped_column(String(32))
    stripe_current_period_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stripe_last_event_at: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=utcnow())
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, server_default=utcnow(), onupdate=utcnow()
    )


class CreditTransaction(Base):
    """One movement of credits; the balance is always the sum of these rows."""

    __tablename__ = "credit_transactions"
    __table_args__ = (
        CheckConstraint(
            "transaction_type IN ('monthly_refill', 'tool_call', 'refund', 'purchase', "
            "'adjustment')",
            name="type_known",
        ),
        CheckConstraint("balance_after = balance_before + amount", name="balance_consistent"),
        Index("ix_credit_transactions_account_created", "account_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("mcp_accounts.id", ondelete="CASCADE"))
    transaction_type: Mapped[str] = mapped_column(String(32))
    amount: Mapped[int] = mapped_column(Integer)
    balance_before: Mapped[int] = mapped_column(Integer)
    balance_after: Mapped[int] = mapped_column(Integer)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    reference_type: Mapped[str | None] = mapped_column(String(32))
    reference_id: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(500))
    created_by: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=utcnow())


class ToolCall(Base):
    """One tool call made with an account: what it cost and how it went."""

    __tablename__ = "tool_calls"
    __table_args__ = (
        Index("ix_tool_calls_account_created", "account_id", "created_at"),
        Index("ix_tool_calls_status", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("mcp_accounts.id", ondelete="CASCADE"))
    upstream: Mapped[str | None] = mapped_column(String(64))
    tool_name: Mapped[str] = mapped_column(String(200))
    credits_cost: Mapped[int] = mapped_column(Integer)
    credits_charged: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default=CallStatus.PENDING)
    instance_id: Mapped[str | None] = mapped_column(String(32))
    success: Mapped[bool] = mapped_column(Boolean, default=False)
    is_backend_error: Mapped[bool] = mapped_column(Boolean, default=False)
    error_code: Mapped[str | None] = mapped_column(String(64))
    latency_ms: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=utcnow())
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CreditHold(Base):
    """Credits one process drew from an account's balance to reserve calls without a
    database round trip; released when idle, at shutdown, or after the process died."""

    __tablename__ = "credit_holds"
    __table_args__ = (CheckConstraint("amount >= 0", name="amount_not_negative"),)

    instance_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("mcp_accounts.id", ondelete="CASCADE"), primary_key=True
    )
    amount: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, server_default=utcnow(), onupdate=utcnow()
    )


class StripeEvent(Base):
    """A billing webhook event already applied: a replay changes nothing."""

    __tablename__ = "stripe_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(100))
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("mcp_accounts.id", ondelete="SET NULL")
    )
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=utcnow())


class BillingGrant(Base):
    """The credits one subscription's billing period has been granted: one row per period.

    ``allocation`` is the tier allocation the period's grants cover so far: an upgrade within
    the period grants only what the new tier's allocation adds to it; anything else, nothing.
    """

    __tablename__ = "billing_grants"
    __table_args__ = (
        UniqueConstraint(
            "subscription_id", "period_start", name="uq_billing_grants_subscription_period"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("mcp_accounts.id", ondelete="CASCADE"), index=True
    )
    subscription_id: Mapped[str] = mapped_column(String(100))
    period_start: Mapped[int] = mapped_column(BigInteger)
    tier: Mapped[str] = mapped_column(String(32))
    allocation: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=utcnow())
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, server_default=utcnow(), onupdate=utcnow()
    )
