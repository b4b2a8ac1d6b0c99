"""Service definitions, integrations, leases and the audit log (access tokens are identity's)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from tollgate.core.database import Base, UTCDateTime, utcnow
from tollgate.core.encrypted import Envelope


class IntegrationStatus(enum.StrEnum):
    """Whether an integration's credentials may be handed out."""

    ACTIVE = "ACTIVE"
    DISABLED = "DISABLED"
    ERROR = "ERROR"


class SharedWith(enum.StrEnum):
    """Who in an organization may use one of its integrations."""

    ALL_MEMBERS = "all_members"
    ADMINS_ONLY = "admins_only"
    USERS = "users"


class LeaseStatus(enum.StrEnum):
    """A lease's state; expiry is also derived from ``expires_at`` on every read."""

    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


class ServiceDefinition(Base):
    """A service added by an admin, beside the built-in catalogue."""

    __tablename__ = "service_definitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(500))
    fields: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=utcnow())


class Integration(Base):
    """A user's or an organization's credentials for one service, stored encrypted."""

    __tablename__ = "integrations"
    __table_args__ = (
        UniqueConstraint("owner_key", "service", name="uq_integrations_owner_service"),
        CheckConstraint("(user_id IS NULL) <> (organization_id IS NULL)", name="exactly_one_owner"),
        CheckConstraint("status IN ('ACTIVE', 'DISABLED', 'ERROR')", name="status_known"),
        CheckConstraint(
            "shared_with IN ('all_members', 'admins_only', 'users')", name="shared_with_known"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_key: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    organization_id: Mapped[int | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    service: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=IntegrationStatus.ACTIVE)
    status_message: Mapped[str | None] = mapped_column(String(500))
    credentials_envelope: Mapped[str | None] = mapped_column(Envelope(20000))
    shared_with: Mapped[str] = mapped_column(String(16), default=SharedWith.ALL_MEMBERS)
    shared_user_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    created_by: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=utcnow())
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, server_default=utcnow(), onupdate=utcnow()
    )


class Lease(Base):
    """Credentials handed to an MCP server for a while; kept encrypted, renewable, revocable."""

    __tablename__ = "leases"
    __table_args__ = (
        CheckConstraint("renewal_count <= max_renewals", name="renewals_within_limit"),
        CheckConstraint("status IN ('active', 'expired', 'revoked')", name="status_known"),
        Index("ix_leases_status_expires", "status", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_id: Mapped[int | None] = mapped_column(
        ForeignKey("access_tokens.id", ondelete="SET NULL")
    )
    server_id: Mapped[str | None] = mapped_column(String(200))
    services: Mapped[list[str]] = mapped_column(JSON)
    credential_scope: Mapped[str] = mapped_column(String(16))
    included_org_credentials: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    credentials_envelope: Mapped[str] = mapped_column(Envelope(100000))
    ttl_seconds: Mapped[int] = mapped_column(Integer)
    max_renewals: Mapped[int] = mapped_column(Integer)
    renewal_count: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default=LeaseStatus.ACTIVE)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=utcnow())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    max_expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_renewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoke_reason: Mapped[str | None] = mapped_column(String(500))


class LeaseIntegration(Base):
    """Which integrations a lease carries, so disabling one revokes its leases."""

    __tablename__ = "lease_integrations"

    lease_id: Mapped[str] = mapped_column(
        ForeignKey("leases.id", ondelete="CASCADE"), primary_key=True
    )
    integration_id: Mapped[int] = mapped_column(Integer, primary_key=True, index=True)
    organization_id: Mapped[int | None] = mapped_column(Integer, index=True)


class AuditLog(Base):
    """``user_activity_logs``: append-only record of who did what, never a secret."""

    __tablename__ = "user_activity_logs"
    __table_args__ = (Index("ix_user_activity_logs_action_created", "action", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    action: Mapped[str] = mapped_column(String(64))
    actor_user_id: Mapped[int | None] = mapped_column(Integer, index=True)
    actor_token_prefix: Mapped[str | None] = mapped_column(String(16))
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    client_address: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=utcnow(), index=True)
