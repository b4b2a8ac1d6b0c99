"""Upstream MCP servers: how to reach them, what they cost, what they offer, how they are."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, CheckConstraint, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tollgate.core.database import Base, UTCDateTime, utcnow
from tollgate.core.encrypted import Envelope


class AuthMode(enum.StrEnum):
    """Whose credentials go upstream: none, Tollgate's own, or the calling user's."""

    NONE = "none"
    STATIC = "static"
    BROKER = "broker"


class UpstreamState(enum.StrEnum):
    """Whether an upstream answered lately."""

    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


class Upstream(Base):
    """A registered upstream MCP server."""

    __tablename__ = "upstreams"
    __table_args__ = (
        CheckConstraint("transport IN ('streamable_http', 'stdio')", name="transport_known"),
        CheckConstraint("auth_mode IN ('none', 'static', 'broker')", name="auth_mode_known"),
        CheckConstraint("price >= 0", name="price_not_negative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    transport: Mapped[str] = mapped_column(String(16))
    url: Mapped[str | None] = mapped_column(String(2000))
    command: Mapped[str | None] = mapped_column(String(2000))
    args: Mapped[list[str]] = mapped_column(JSON, default=list)
    env_envelope: Mapped[str | None] = mapped_column(Envelope(20000))
    auth_mode: Mapped[str] = mapped_column(String(16), default=AuthMode.NONE)
    headers_envelope: Mapped[str | None] = mapped_column(Envelope(20000))
    broker_service: Mapped[str | None] = mapped_column(String(64))
    broker_header: Mapped[str | None] = mapped_column(String(500))
    price: Mapped[int] = mapped_column(Integer, default=1)
    tool_prices: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    tools_allowed: Mapped[list[str]] = mapped_column(JSON, default=list)
    tools_denied: Mapped[list[str]] = mapped_column(JSON, default=list)
    timeout_seconds: Mapped[float] = mapped_column(Float, default=30.0)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    protocol_era: Mapped[str | None] = mapped_column(String(16))
    catalogue: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    catalogue_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(16), default=UpstreamState.UNKNOWN)
    last_error: Mapped[str | None] = mapped_column(String(2000))
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=utcnow())
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, server_default=utcnow(), onupdate=utcnow()
    )


class VirtualServer(Base):
    """A curated MCP server: chosen tools, resources and prompts of any upstreams, served at
    ``/servers/<name>/mcp``."""

    __tablename__ = "virtual_servers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    title: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(2000))
    tools: Mapped[list[str]] = mapped_column(JSON, default=list)
    resources: Mapped[list[str]] = mapped_column(JSON, default=list)
    prompts: Mapped[list[str]] = mapped_column(JSON, default=list)
    prefixed: Mapped[bool] = mapped_column(Boolean, default=True)
    allowed_users: Mapped[list[int]] = mapped_column(JSON, default=list)
    allowed_organizations: Mapped[list[int]] = mapped_column(JSON, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=utcnow())
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, server_default=utcnow(), onupdate=utcnow()
    )
