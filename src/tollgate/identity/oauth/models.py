"""OAuth clients, grants (a user's consent to one client), codes and tokens.

Codes and tokens are kept as SHA-256 hashes only, with a short visible prefix. A grant is a
token family: revoking it (by the user, an admin, or reuse detection) ends every code and
token issued under it.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tollgate.core.database import Base, UTCDateTime, utcnow


class ClientKind(enum.StrEnum):
    """How a client came to be known."""

    DYNAMIC = "dynamic"
    """Registered by itself through RFC 7591 dynamic registration."""
    PREREGISTERED = "preregistered"
    """Created by an admin."""


class TokenKind(enum.StrEnum):
    """The kinds of OAuth token."""

    ACCESS = "access"
    REFRESH = "refresh"


class OAuthClient(Base):
    """A registered client (clients named by a metadata document URL are not stored)."""

    __tablename__ = "oauth_clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    client_name: Mapped[str | None] = mapped_column(String(200))
    secret_hash: Mapped[str | None] = mapped_column(String(64))
    client_metadata: Mapped[dict[str, object]] = mapped_column(JSON)
    """The registered RFC 7591 metadata (redirect URIs, grant types, auth method, ...)."""
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=utcnow())


class OAuthGrant(Base):
    """A user's consent to one client for one resource: the family of its codes and tokens."""

    __tablename__ = "oauth_grants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[str] = mapped_column(String(2048))
    client_name: Mapped[str | None] = mapped_column(String(200))
    resource: Mapped[str] = mapped_column(String(2048))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=utcnow())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_reason: Mapped[str | None] = mapped_column(String(64))


class OAuthCode(Base):
    """An authorization code (single use, short-lived)."""

    __tablename__ = "oauth_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    grant_id: Mapped[int] = mapped_column(
        ForeignKey("oauth_grants.id", ondelete="CASCADE"), index=True
    )
    redirect_uri: Mapped[str] = mapped_column(String(2048))
    redirect_uri_explicit: Mapped[bool] = mapped_column(Boolean)
    code_challenge: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OAuthToken(Base):
    """An access or refresh token of a grant; a used refresh token is kept to detect reuse."""

    __tablename__ = "oauth_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_prefix: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    grant_id: Mapped[int] = mapped_column(
        ForeignKey("oauth_grants.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=utcnow())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """When a refresh token was exchanged (rotated); presenting it again revokes the family."""
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
