"""Access tokens for MCP servers: issued once, stored as hashes, checked on every use."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tollgate.broker import audit
from tollgate.broker.models import AccessToken
from tollgate.core.cache import Cache
from tollgate.core.crypto import hash_token, new_token
from tollgate.core.database import after_commit, utcnow
from tollgate.core.errors import BadRequest, NotFound, Unauthorized
from tollgate.identity.models import User

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "mcp_"
TOKEN_RANDOM_CHARS = 40
"""``mcp_`` + 40 URL-safe characters (about 240 bits)."""

TOKEN_VISIBLE_PREFIX = 12
"""Characters kept in clear so people can tell their tokens apart (and audit rows can name them)."""

USAGE_WRITE_INTERVAL_SECONDS = 60
"""``last_used_at`` is written at most once a minute per token, not on every request."""

KNOWN_SCOPES = frozenset({"lease", "read", "ingest"})
"""``read``: who am I and what can I get; ``lease``: create, renew and revoke leases;
``ingest``: post analytics records (for external MCP servers)."""

UNAUTHENTICATED = "Unauthenticated."


@dataclass(frozen=True)
class IssuedToken:
    """A new token: the full value is shown once."""

    token: AccessToken
    full: str


async def issue(
    session: AsyncSession,
    user: User,
    *,
    name: str,
    scopes: Sequence[str],
    expires_at: datetime | None,
    actor: audit.Actor,
) -> IssuedToken:
    """Create a token for ``user``."""
    unknown = sorted(set(scopes) - KNOWN_SCOPES)
    if unknown:
        raise BadRequest(f"Unknown scopes: {', '.join(unknown)}", code="unknown_scope")
    full = new_token(TOKEN_PREFIX, TOKEN_RANDOM_CHARS)
    token = AccessToken(
        user_id=user.id,
        name=name,
        token_hash=hash_token(full),
        token_prefix=full[:TOKEN_VISIBLE_PREFIX],
        scopes=sorted(set(scopes)),
        expires_at=expires_at,
        is_active=True,
    )
    session.add(token)
    await session.flush()
    audit.record(
        session,
        "token_created",
        actor,
        target_type="access_token",
        target_id=token.id,
        details={"name": name, "prefix": token.token_prefix, "scopes": token.scopes},
    )
    return IssuedToken(token=token, full=full)


async def list_for_user(session: AsyncSession, user_id: int) -> Sequence[AccessToken]:
    """A user's tokens, newest first."""
    query = (
        select(AccessToken).where(AccessToken.user_id == user_id).order_by(AccessToken.id.desc())
    )
    return (await session.execute(query)).scalars().all()


async def revoke(
    session: AsyncSession, token_id: int, user: User, actor: audit.Actor
) -> AccessToken:
    """Revoke one of ``user``'s tokens (idempotent)."""
    token = await session.get(AccessToken, token_id)
    if token is None or token.user_id != user.id:
        raise NotFound("Token not found", code="token_not_found")
    if token.revoked_at is None:
        await session.execute(
            update(AccessToken)
            .where(AccessToken.id == token.id)
            .values(is_active=False, revoked_at=utcnow())
        )
        await session.refresh(token)
        audit.record(
            session,
            "token_revoked",
            actor,
            target_type="access_token",
            target_id=token.id,
            details={"prefix": token.token_prefix},
        )
    return token


@dataclass(frozen=True)
class TokenUse:
    """A token that passed every check, and its user."""

    token: AccessToken
    user: User


class TokenRefused(Unauthorized):
    """A bearer token that is not (or no longer) valid; ``reason`` goes to the audit row."""

    def __init__(self, reason: str) -> None:
        super().__init__(UNAUTHENTICATED, code="invalid_token")
        self.reason = reason


async def authenticate(session: AsyncSession, raw: str) -> TokenUse:
    """The valid token and active user behind ``raw``, or TokenRefused.

    Expiry is decided by the database clock, in the statement that reads the token.
    """
    still_valid = AccessToken.is_active.is_(True) & AccessToken.revoked_at.is_(None)
    not_expired = or_(AccessToken.expires_at.is_(None), AccessToken.expires_at > utcnow())
    row = (
        await session.execute(
            select(AccessToken, User, still_valid, not_expired)
            .join(User, User.id == AccessToken.user_id)
            .where(AccessToken.token_hash == hash_token(raw))
        )
    ).first()
    if row is None:
        raise TokenRefused("unknown_token")
    token, user, valid, fresh = row
    if not valid:
        raise TokenRefused("inactive_token")
    if not fresh:
        raise TokenRefused("expired_token")
    if not user.is_active:
        raise TokenRefused("inactive_user")
    return TokenUse(token=token, user=user)


def track_use(session: AsyncSession, cache: Cache, token: AccessToken) -> None:
    """Write ``last_used_at`` after this request commits, at most once a minute per token."""

    async def _write() -> None:
        if not await cache.add(f"token-used:{token.id}", "1", USAGE_WRITE_INTERVAL_SECONDS):
            return
        try:
            await session.execute(
                update(AccessToken).where(AccessToken.id == token.id).values(last_used_at=utcnow())
            )
            await session.commit()
        except Exception:
            logger.exception("could not record the use of token %s", token.token_prefix)
            await session.rollback()

    after_commit(session, _write)
