"""Integrations: a user's or an organization's credentials for one service, kept encrypted."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tollgate.broker import audit, catalogue
from tollgate.broker.models import Integration, IntegrationStatus, SharedWith
from tollgate.core.crypto import MASK, Keyring
from tollgate.core.encrypted import associated_data
from tollgate.core.errors import Conflict, NotFound
from tollgate.identity.models import Membership, Organization, User
from tollgate.identity.organizations import MANAGER_ROLES


def _aad(integration_id: int) -> str:
    return associated_data("integrations", "credentials_envelope", integration_id)


def seal(keyring: Keyring, integration: Integration, credentials: dict[str, Any]) -> None:
    """Store ``credentials`` encrypted and bound to this integration's row."""
    integration.credentials_envelope = keyring.encrypt_text(
        json.dumps(credentials, sort_keys=True), _aad(integration.id)
    )


def unseal(keyring: Keyring, integration: Integration) -> dict[str, Any]:
    """The integration's credentials in clear (for a lease or the upstream call only)."""
    if not integration.credentials_envelope:
        return {}
    data = json.loads(keyring.decrypt_text(integration.credentials_envelope, _aad(integration.id)))
    assert isinstance(data, dict)
    return data


def masked(service: catalogue.Service, credentials: dict[str, Any]) -> dict[str, Any]:
    """Credentials as any response shows them: secret fields as ``********``."""
    secret = service.secret_fields()
    return {k: (MASK if k in secret else v) for k, v in sorted(credentials.items())}


@dataclass(frozen=True)
class IntegrationInput:
    """What a caller may set on an integration."""

    service: str
    name: str | None
    credentials: dict[str, Any]
    status: IntegrationStatus = IntegrationStatus.ACTIVE
    shared_with: SharedWith = SharedWith.ALL_MEMBERS
    shared_user_ids: tuple[int, ...] = ()


async def create(
    session: AsyncSession,
    keyring: Keyring,
    data: IntegrationInput,
    *,
    owner_user: User | None,
    owner_org: Organization | None,
    actor: audit.Actor,
) -> Integration:
    """Create an integration owned by a user or by an organization."""
    service = await catalogue.get_service(session, data.service)
    credentials = catalogue.validate_credentials(service, data.credentials)
    owner_key = f"user:{owner_user.id}" if owner_user else f"org:{owner_org.id if owner_org else 0}"
    integration = Integration(
        owner_key=owner_key,
        user_id=owner_user.id if owner_user else None,
        organization_id=owner_org.id if owner_org else None,
        service=service.slug,
        name=data.name or service.name,
        status=data.status,
        shared_with=data.shared_with,
        shared_user_ids=sorted(set(data.shared_user_ids)),
        created_by=actor.user_id,
    )
    session.add(integration)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise Conflict(
            f"An integration for {service.slug} exists already", code="integration_exists"
        ) from exc
    seal(keyring, integration, credentials)
    await session.flush()
    audit.record(
        session,
        "integration_created",
        actor,
        target_type="integration",
        target_id=integration.id,
        details=_audit_details(integration),
    )
    return integration


def _audit_details(integration: Integration, **extra: Any) -> dict[str, Any]:
    return {
        "service": integration.service,
        "organization_id": integration.organization_id,
        "status": integration.status,
        **extra,
    }


async def get(session: AsyncSession, integration_id: int) -> Integration:
    """The integration with ``integration_id``, or NotFound."""
    integration = await session.get(Integration, integration_id)
    if integration is None:
        raise NotFound("Integration not found", code="integration_not_found")
    return integration


async def reloaded(session: AsyncSession, integration: Integration) -> Integration:
    """The integration as stored now (timestamps the database set included)."""
    await session.refresh(integration)
    return integration


async def personal(session: AsyncSession, user: User) -> Sequence[Integration]:
    """A user's own integrations."""
    query = select(Integration).where(Integration.user_id == user.id).order_by(Integration.id)
    return (await session.execute(query)).scalars().all()


async def of_organization(session: AsyncSession, org_id: int) -> Sequence[Integration]:
    """An organization's integrations."""
    query = (
        select(Integration).where(Integration.organization_id == org_id).order_by(Integration.id)
    )
    return (await session.execute(query)).scalars().all()


def shared_with_member(integration: Integration, user_id: int, role: str) -> bool:
    """True when the organization's sharing rule lets this member use the integration."""
    if integration.shared_with == SharedWith.ALL_MEMBERS:
        return True
    if integration.shared_with == SharedWith.ADMINS_ONLY:
        return role in MANAGER_ROLES
    return user_id in (integration.shared_user_ids or [])


def can_see(integration: Integration, user: User, membership: Membership | None) -> bool:
    """Whether ``user`` may see this integration (masked)."""
    if integration.user_id is not None:
        return integration.user_id == user.id
    if membership is None:
        return user.role == "admin"
    return membership.role in MANAGER_ROLES or shared_with_member(
        integration, user.id, membership.role
    )


@dataclass(frozen=True)
class IntegrationChanges:
    """Changes to an integration; None leaves a field as it is."""

    name: str | None = None
    credentials: dict[str, Any] | None = None
    status: IntegrationStatus | None = None
    shared_with: SharedWith | None = None
    shared_user_ids: tuple[int, ...] | None = None


async def update(
    session: AsyncSession,
    keyring: Keyring,
    integration: Integration,
    changes: IntegrationChanges,
    actor: audit.Actor,
) -> tuple[Integration, bool]:
    """Apply ``changes``; returns the integration and whether its leases must be revoked.

    New credential values are merged into the stored ones and validated as a whole.
    """
    changed: list[str] = []
    if changes.name is not None:
        integration.name = changes.name
        changed.append("name")
    if changes.credentials is not None:
        service = await catalogue.get_service(session, integration.service)
        merged = {**unseal(keyring, integration), **changes.credentials}
        seal(keyring, integration, catalogue.validate_credentials(service, merged))
        changed.append("credentials")
    if changes.shared_with is not None:
        integration.shared_with = changes.shared_with
        changed.append("shared_with")
    if changes.shared_user_ids is not None:
        integration.shared_user_ids = sorted(set(changes.shared_user_ids))
        changed.append("shared_user_ids")
    was_active = integration.status == IntegrationStatus.ACTIVE
    if changes.status is not None:
        integration.status = changes.status
        changed.append("status")
    await session.flush()
    audit.record(
        session,
        "integration_updated",
        actor,
        target_type="integration",
        target_id=integration.id,
        details=_audit_details(integration, changed=changed),
    )
    revoke = was_active and integration.status != IntegrationStatus.ACTIVE
    return integration, revoke or "shared_with" in changed or "shared_user_ids" in changed


async def delete(session: AsyncSession, integration: Integration, actor: audit.Actor) -> None:
    """Remove an integration."""
    audit.record(
        session,
        "integration_deleted",
        actor,
        target_type="integration",
        target_id=integration.id,
        details=_audit_details(integration),
    )
    await session.delete(integration)
    await session.flush()
