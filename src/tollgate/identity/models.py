"""Users, their access tokens, organizations, memberships and invitations."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tollgate.core.database import Base, UTCDateTime, utcnow


class Role(enum.StrEnum):
    """A user's role across Tollgate."""

    USER = "user"
    ADMIN = "admin"


class OrgRole(enum.StrEnum):
    """A member's role inside one organization."""

    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


class User(Base):
    """A person (or a system identity) that signs in to Tollgate."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('user', 'admin')", name="role_known"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16), default=Role.USER)
    is_superuser: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=utcnow())
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, server_default=utcnow(), onupdate=utcnow()
    )
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    token_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    """Bumped when the password changes or the user is deactivated: older JWTs stop working."""


class AccessToken(Base):
    """A bearer token for an MCP server acting for a user (``mcpt_...``); only its hash is kept."""

    __tablename__ = "access_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_prefix: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=utcnow())


class Organization(Base):
    """A group of users that shares credentials and tools."""

    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=utcnow())


class Membership(Base):
    """A user's place in an organization."""

    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("organization_id", "user_id", name="uq_memberships_org_user"),
        CheckConstraint("role IN ('owner', 'admin', 'member')", name="role_known"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16), default=OrgRole.MEMBER)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=utcnow())


class InvitationStatus(enum.StrEnum):
    """Where an invitation stands."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    CANCELLED = "cancelled"


class Invitation(Base):
    """An offer to join an organization; the invitee becomes a member only by accepting it.

    The invitee is named as the inviter typed it: by user id or by email, never resolved
    at invitation time, so an invitation says nothing about whether that user exists.
    ``invitee_user_id`` is deliberately not a foreign key for the same reason.
    """

    __tablename__ = "organization_invitations"
    __table_args__ = (
        CheckConstraint("role IN ('owner', 'admin', 'member')", name="role_known"),
        CheckConstraint(
            "status IN ('pending', 'accepted', 'declined', 'cancelled')", name="status_known"
        ),
        CheckConstraint(
            "invitee_user_id IS NOT NULL OR invitee_email IS NOT NULL", name="invitee_named"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    invitee_user_id: Mapped[int | None] = mapped_column(Integer, index=True)
    invitee_email: Mapped[str | None] = mapped_column(String(320), index=True)
    role: Mapped[str] = mapped_column(String(16), default=OrgRole.MEMBER)
    status: Mapped[str] = mapped_column(String(16), default=InvitationStatus.PENDING)
    invited_by_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=utcnow())
    responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
