"""Access tokens for MCP servers: issued once, stored as hashes, listed and revoked.

Checking them on use is identity's (:mod:`tollgate.identity.credentials`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tollgate.broker import audit
from tollgate.core.crypto import hash_token, new_token
from tollgate.core.database import utcnow
from tollgate.core.errors import BadRequest, NotFound
from tollgate.identity.credentials import ACCESS_TOKEN_PREFIX, VISIBLE_PREFIX
from tollgate.identity.models import AccessToken, User

TOKEN_RANDOM_CHARS = 40
"""``mcpt_`` + 40 URL-safe characters (about 240 bits)."""


KNOWN_SCOPES = frozenset({"lease", "read", "ingest"})
"""``read``: who am I and what can I get; ``lease``: create, renew and revoke leases;
``ingest``: post analytics records (for external MCP servers)."""


def expiry_after(days: int | None) -> datetime | None:
    """When a token issued now for ``days`` days expires (None: it does not)."""
    return datetime.now(UTC) + timedelta(days=days) if days else None


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
    full = new_token(ACCESS_TOKEN_PREFIX, TOKEN_RANDOM_CHARS)
    token = AccessToken(
        user_id=user.id,
        name=name,
        token_hash=hash_token(full),
        token_prefix=full[:VISIBLE_PREFIX],
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
