"""Leases: resolve a user's credentials per service, hand them out for a while, renew, revoke.

Resolution, per service: the user's own ACTIVE integration wins; otherwise an ACTIVE
integration of an organization the user belongs to and that shares it with them. When
several organizations qualify, the one with the lowest id (the oldest) is chosen, so the
answer never depends on timing.

Every state change is one conditional UPDATE that reads the database clock, so a renewal
racing a revocation can never leave a revoked lease active.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tollgate.broker import audit
from tollgate.broker.integrations import shared_with_member, unseal
from tollgate.broker.models import (
    Integration,
    IntegrationStatus,
    Lease,
    LeaseIntegration,
    LeaseStatus,
)
from tollgate.core.crypto import Keyring
from tollgate.core.database import add_seconds, database_now, earliest, utcnow
from tollgate.core.encrypted import associated_data
from tollgate.core.errors import Conflict, NotFound, Unprocessable
from tollgate.core.settings import Settings
from tollgate.identity.models import Membership, User
from tollgate.identity.organizations import OrgActor

LEASE_ID_PREFIX = "lse_"
LEASE_ID_RANDOM_BYTES = 16
"""``lse_`` + 22 URL-safe characters: unguessable, so ids are safe to log."""


@dataclass(frozen=True)
class Resolved:
    """The integration chosen for one service, and the organization it came from."""

    integration: Integration
    organization_id: int | None


async def resolve(
    session: AsyncSession, user: User, services: Sequence[str]
) -> dict[str, Resolved]:
    """The integration each service resolves to for ``user`` (missing services are absent)."""
    wanted = set(services)
    found: dict[str, Resolved] = {}
    personal = await session.execute(
        select(Integration).where(
            Integration.user_id == user.id,
            Integration.service.in_(wanted),
            Integration.status == IntegrationStatus.ACTIVE,
        )
    )
    for integration in personal.scalars():
        found[integration.service] = Resolved(integration, None)
    remaining = wanted - set(found)
    if not remaining:
        return found
    shared = await session.execute(
        select(Integration, Membership.role)
        .join(Membership, Membership.organization_id == Integration.organization_id)
        .where(
            Membership.user_id == user.id,
            Integration.service.in_(remaining),
            Integration.status == IntegrationStatus.ACTIVE,
        )
        .order_by(Integration.organization_id, Integration.id)
    )
    for integration, role in shared.all():
        if integration.service not in found and shared_with_member(integration, user.id, role):
            found[integration.service] = Resolved(integration, integration.organization_id)
    return found


async def credential_of(
    session: AsyncSession, keyring: Keyring, user_id: int, service: str
) -> dict[str, Any] | None:
    """User ``user_id``'s credential for ``service`` in clear, resolved as for a lease (their
    own integration, else one an organization shares with them); None when they have none."""
    user = (await session.execute(select(User).where(User.id == user_id))).scalar_one()
    found = (await resolve(session, user, [service])).get(service)
    return unseal(keyring, found.integration) if found is not None else None


async def available_services(session: AsyncSession, user: User) -> list[str]:
    """Every service ``user`` can get a credential for, sorted."""
    personal = select(Integration.service).where(
        Integration.user_id == user.id, Integration.status == IntegrationStatus.ACTIVE
    )
    services = set((await session.execute(personal)).scalars())
    shared = await session.execute(
        select(Integration, Membership.role)
        .join(Membership, Membership.organization_id == Integration.organization_id)
        .where(Membership.user_id == user.id, Integration.status == IntegrationStatus.ACTIVE)
    )
    services |= {i.service for i, role in shared.all() if shared_with_member(i, user.id, role)}
    return sorted(services)


@dataclass
class IssuedLease:
    """A new lease with its credentials in clear: the only time they leave Tollgate."""

    lease: Lease
    credentials: dict[str, dict[str, Any]]
    missing: list[str] = field(default_factory=list)


def _scope(resolved: dict[str, Resolved]) -> str:
    origins = {r.organization_id is None for r in resolved.values()}
    if origins == {True}:
        return "personal"
    return "organization" if origins == {False} else "mixed"


def _org_sources(resolved: dict[str, Resolved]) -> list[dict[str, Any]]:
    by_org: dict[int, list[str]] = {}
    for service, choice in sorted(resolved.items()):
        if choice.organization_id is not None:
            by_org.setdefault(choice.organization_id, []).append(service)
    return [{"organization_id": org, "services": names} for org, names in sorted(by_org.items())]


def _lease_aad(lease_id: str) -> str:
    return associated_data("leases", "credentials_envelope", lease_id)


@dataclass(frozen=True)
class LeaseRequest:
    """What an MCP server asks for."""

    services: list[str]
    ttl: int | None
    server_id: str | None
    allow_partial: bool = False


async def create(
    session: AsyncSession,
    keyring: Keyring,
    settings: Settings,
    user: User,
    request: LeaseRequest,
    *,
    token_id: int | None,
    actor: audit.Actor,
) -> IssuedLease:
    """Resolve the services and issue a lease; 422 listing the services with no credential."""
    ttl = request.ttl or settings.lease_default_ttl_seconds
    if not settings.lease_min_ttl_seconds <= ttl <= settings.lease_max_ttl_seconds:
        raise Unprocessable(
            f"ttl must be between {settings.lease_min_ttl_seconds} and "
            f"{settings.lease_max_ttl_seconds} seconds",
            code="invalid_ttl",
        )
    resolved = await resolve(session, user, request.services)
    missing = [s for s in request.services if s not in resolved]
    if missing and (not request.allow_partial or not resolved):
        raise Unprocessable(
            f"No credentials available for: {', '.join(missing)}",
            code="credentials_unavailable",
            extra={"services": missing},
        )
    credentials = {s: unseal(keyring, r.integration) for s, r in resolved.items()}
    lease_id = LEASE_ID_PREFIX + secrets.token_urlsafe(LEASE_ID_RANDOM_BYTES)
    lease = Lease(
        id=lease_id,
        user_id=user.id,
        token_id=token_id,
        server_id=request.server_id,
        services=sorted(resolved),
        credential_scope=_scope(resolved),
        included_org_credentials=_org_sources(resolved),
        credentials_envelope=keyring.encrypt_text(
            json.dumps(credentials, sort_keys=True), _lease_aad(lease_id)
        ),
        ttl_seconds=ttl,
        max_renewals=settings.lease_max_renewals,
        renewal_count=0,
        status=LeaseStatus.ACTIVE,
        expires_at=add_seconds(utcnow(), ttl),
        max_expires_at=add_seconds(utcnow(), settings.lease_max_lifetime_seconds),
    )
    session.add(lease)
    session.add_all(
        LeaseIntegration(
            lease_id=lease_id,
            integration_id=r.integration.id,
            organization_id=r.organization_id,
        )
        for r in resolved.values()
    )
    await session.flush()
    await session.refresh(lease)
    audit.record(
        session,
        "lease_created",
        actor,
        target_type="lease",
        target_id=lease_id,
        details={
            "services": lease.services,
            "credential_scope": lease.credential_scope,
            "server_id": request.server_id,
            "ttl": ttl,
            "missing": missing,
        },
    )
    return IssuedLease(lease=lease, credentials=credentials, missing=missing)


def status_of(lease: Lease, now: datetime) -> LeaseStatus:
    """The lease's status derived from its times: revoked, expired or active."""
    if lease.revoked_at is not None or lease.status == LeaseStatus.REVOKED:
        return LeaseStatus.REVOKED
    if lease.expires_at <= now or lease.status == LeaseStatus.EXPIRED:
        return LeaseStatus.EXPIRED
    return LeaseStatus.ACTIVE


def is_renewable(lease: Lease, now: datetime) -> bool:
    """Whether a renewal could still succeed."""
    return (
        status_of(lease, now) == LeaseStatus.ACTIVE
        and lease.renewal_count < lease.max_renewals
        and lease.expires_at < lease.max_expires_at
    )


async def visible_lease(session: AsyncSession, lease_id: str, user: User) -> Lease:
    """The lease if ``user`` owns it or is an admin; 404 for anyone else."""
    lease = await session.get(Lease, lease_id, populate_existing=True)
    if lease is None or (lease.user_id != user.id and user.role != "admin"):
        raise NotFound("Lease not found", code="lease_not_found")
    return lease


async def renew(session: AsyncSession, lease_id: str, user: User, actor: audit.Actor) -> Lease:
    """Extend an active lease by its original TTL, capped at its maximum lifetime."""
    lease = await visible_lease(session, lease_id, user)
    if lease.user_id != user.id:
        raise NotFound("Lease not found", code="lease_not_found")
    renewed = await session.execute(
        update(Lease)
        .where(
            Lease.id == lease_id,
            Lease.status == LeaseStatus.ACTIVE,
            Lease.revoked_at.is_(None),
            Lease.expires_at > utcnow(),
            Lease.renewal_count < Lease.max_renewals,
            Lease.expires_at < Lease.max_expires_at,
        )
        .values(
            expires_at=earliest(
                add_seconds(Lease.expires_at, Lease.ttl_seconds), Lease.max_expires_at
            ),
            renewal_count=Lease.renewal_count + 1,
            last_renewed_at=utcnow(),
        )
        .returning(Lease.id)
    )
    if renewed.first() is None:
        await session.refresh(lease)
        raise _renewal_refusal(lease, await database_now(session))
    await session.refresh(lease)
    audit.record(
        session,
        "lease_renewed",
        actor,
        target_type="lease",
        target_id=lease_id,
        details={"renewal_count": lease.renewal_count},
    )
    return lease


def _renewal_refusal(lease: Lease, now: datetime) -> Conflict:
    state = status_of(lease, now)
    if state == LeaseStatus.REVOKED:
        return Conflict("Cannot renew a revoked lease", code="lease_revoked")
    if state == LeaseStatus.EXPIRED:
        return Conflict("Cannot renew an expired lease", code="lease_expired")
    if lease.renewal_count >= lease.max_renewals:
        return Conflict(
            f"The lease reached its maximum of {lease.max_renewals} renewals",
            code="max_renewals_reached",
        )
    return Conflict("The lease reached its maximum lifetime", code="max_lifetime_reached")


async def revoke(
    session: AsyncSession, lease_id: str, user: User, actor: audit.Actor, reason: str | None
) -> Lease:
    """Revoke a lease; revoking again returns the first ``revoked_at``."""
    lease = await visible_lease(session, lease_id, user)
    revoked = await _revoke_where(session, Lease.id == lease_id, reason or "revoked by owner")
    await session.refresh(lease)
    if revoked:
        audit.record(
            session,
            "lease_revoked",
            actor,
            target_type="lease",
            target_id=lease_id,
            details={"reason": reason},
        )
    return lease


async def _revoke_where(session: AsyncSession, condition: Any, reason: str) -> list[str]:
    result = await session.execute(
        update(Lease)
        .where(condition, Lease.revoked_at.is_(None))
        .values(status=LeaseStatus.REVOKED, revoked_at=utcnow(), revoke_reason=reason)
        .returning(Lease.id)
    )
    return list(result.scalars())


async def revoke_for_integration(
    session: AsyncSession, integration_id: int, reason: str, actor: audit.Actor
) -> list[str]:
    """Revoke the active leases that carry an integration."""
    carrying = select(LeaseIntegration.lease_id).where(
        LeaseIntegration.integration_id == integration_id
    )
    revoked = await _revoke_where(
        session, and_(Lease.id.in_(carrying), Lease.status == LeaseStatus.ACTIVE), reason
    )
    _audit_bulk(session, revoked, reason, actor)
    return revoked


async def revoke_for_membership(
    session: AsyncSession, org_id: int, user_id: int, reason: str, actor: audit.Actor
) -> list[str]:
    """Revoke a user's active leases that carry credentials of an organization."""
    carrying = select(LeaseIntegration.lease_id).where(LeaseIntegration.organization_id == org_id)
    revoked = await _revoke_where(
        session,
        and_(
            Lease.id.in_(carrying),
            Lease.user_id == user_id,
            Lease.status == LeaseStatus.ACTIVE,
        ),
        reason,
    )
    _audit_bulk(session, revoked, reason, actor)
    return revoked


async def revoke_on_member_removed(session: AsyncSession, org_id: int, user_id: int) -> list[str]:
    """Someone left an organization: revoke their leases carrying its credentials (a
    member-removed hook, wired by ``broker.wiring``)."""
    return await revoke_for_membership(
        session, org_id, user_id, "removed from organization", audit.Actor()
    )


async def revoke_on_role_lowered(
    session: AsyncSession, org_id: int, user_id: int, actor: OrgActor
) -> list[str]:
    """An owner or admin became a plain member: revoke their leases carrying the
    organization's credentials (a role-lowered hook, wired by ``broker.wiring``)."""
    by = audit.Actor(user_id=actor.user_id, client_address=actor.client_address)
    return await revoke_for_membership(session, org_id, user_id, "member role lowered", by)


def _audit_bulk(
    session: AsyncSession, lease_ids: list[str], reason: str, actor: audit.Actor
) -> None:
    for lease_id in lease_ids:
        audit.record(
            session,
            "lease_revoked",
            actor,
            target_type="lease",
            target_id=lease_id,
            details={"reason": reason},
        )


async def mark_expired(session: AsyncSession) -> int:
    """Mark active leases past their expiry as expired (status is derived on read too)."""
    result = await session.execute(
        update(Lease)
        .where(Lease.status == LeaseStatus.ACTIVE, Lease.expires_at <= utcnow())
        .values(status=LeaseStatus.EXPIRED)
        .returning(Lease.id)
    )
    return len(result.all())
