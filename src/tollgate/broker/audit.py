"""The audit trail (``user_activity_logs``): append-only, never a secret."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tollgate.broker.models import AuditLog
from tollgate.core.database import transaction
from tollgate.identity import organizations as orgs

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Actor:
    """Who did something, and from where."""

    user_id: int | None = None
    token_prefix: str | None = None
    client_address: str | None = None


def record(
    session: AsyncSession,
    action: str,
    actor: Actor,
    *,
    target_type: str | None = None,
    target_id: object = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Add an audit row to the caller's transaction (it lands only if that commits)."""
    session.add(
        AuditLog(
            action=action,
            actor_user_id=actor.user_id,
            actor_token_prefix=actor.token_prefix,
            target_type=target_type,
            target_id=None if target_id is None else str(target_id),
            client_address=actor.client_address,
            details=details or {},
        )
    )


async def record_now(
    sessions: async_sessionmaker[AsyncSession],
    action: str,
    actor: Actor,
    *,
    target_type: str | None = None,
    target_id: object = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Write an audit row in its own transaction: for failures whose request rolls back.

    Call it while holding no other transaction (SQLite has one writer at a time).
    """
    try:
        async with transaction(sessions) as session:
            record(
                session,
                action,
                actor,
                target_type=target_type,
                target_id=target_id,
                details=details,
            )
    except Exception:
        logger.exception("could not write audit row %s", action)


def record_organization_change(session: AsyncSession, change: orgs.OrgChange) -> None:
    """Organization changes made by the identity service land in the trail like ours
    (an organization change hook, wired by ``broker.wiring``)."""
    record(
        session,
        change.action,
        Actor(user_id=change.actor.user_id, client_address=change.actor.client_address),
        target_type="organization",
        target_id=change.organization_id,
        details=change.details,
    )


@dataclass(frozen=True)
class AuditFilter:
    """What to look for in the audit trail."""

    action: str | None = None
    actor_user_id: int | None = None
    target_type: str | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _filtered(query: Select[Any], where: AuditFilter) -> Select[Any]:
    if where.action:
        query = query.where(AuditLog.action == where.action)
    if where.actor_user_id is not None:
        query = query.where(AuditLog.actor_user_id == where.actor_user_id)
    if where.target_type:
        query = query.where(AuditLog.target_type == where.target_type)
    if where.target_id:
        query = query.where(AuditLog.target_id == where.target_id)
    if where.since:
        query = query.where(AuditLog.created_at >= where.since)
    if where.until:
        query = query.where(AuditLog.created_at < where.until)
    return query


async def search(
    session: AsyncSession, where: AuditFilter, *, limit: int, offset: int
) -> tuple[int, Sequence[AuditLog]]:
    """Matching rows, newest first, and how many match."""
    total = (await session.execute(_filtered(select(func.count(AuditLog.id)), where))).scalar_one()
    rows = await session.execute(
        _filtered(select(AuditLog), where).order_by(AuditLog.id.desc()).limit(limit).offset(offset)
    )
    return int(total), rows.scalars().all()
