"""Integrations as their owners see and change them: described with secrets masked, and
changed or removed together with what must follow (their leases revoked).

The API (``organization_routes``) and the pages both go through these, so a disabled or
deleted integration revokes its leases whichever door it was changed through.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from tollgate.broker import audit, catalogue, integrations, leases
from tollgate.broker.models import Integration
from tollgate.broker.schemas import IntegrationOut
from tollgate.core.crypto import Keyring
from tollgate.core.errors import NotFound
from tollgate.identity.models import User


async def describe(
    session: AsyncSession, keyring: Keyring, integration: Integration
) -> IntegrationOut:
    """An integration as any answer or page shows it: secret fields as ``********``."""
    service = await catalogue.get_service(session, integration.service)
    return IntegrationOut(
        id=integration.id,
        service=integration.service,
        name=integration.name,
        status=integration.status,
        scope="personal" if integration.user_id is not None else "organization",
        organization_id=integration.organization_id,
        credentials=integrations.masked(service, integrations.unseal(keyring, integration)),
        shared_with=integration.shared_with if integration.organization_id else None,
        shared_user_ids=list(integration.shared_user_ids or []),
        created_at=integration.created_at,
        updated_at=integration.updated_at,
    )


async def describe_stored(
    session: AsyncSession, keyring: Keyring, integration: Integration
) -> IntegrationOut:
    """:func:`describe`, after reading back what the database set (timestamps)."""
    return await describe(session, keyring, await integrations.reloaded(session, integration))


async def personal(session: AsyncSession, keyring: Keyring, user: User) -> list[IntegrationOut]:
    """The user's own integrations, described."""
    return [await describe(session, keyring, i) for i in await integrations.personal(session, user)]


async def own(session: AsyncSession, integration_id: int, user: User) -> Integration:
    """One of the user's own integrations; NotFound for anyone else's."""
    integration = await integrations.get(session, integration_id)
    if integration.user_id != user.id:
        raise NotFound("Integration not found", code="integration_not_found")
    return integration


async def change(
    session: AsyncSession,
    keyring: Keyring,
    integration: Integration,
    changes: integrations.IntegrationChanges,
    actor: audit.Actor,
) -> Integration:
    """Apply ``changes``; disabling or re-sharing the integration revokes its leases."""
    integration, revoke = await integrations.update(session, keyring, integration, changes, actor)
    if revoke:
        await leases.revoke_for_integration(
            session, integration.id, f"integration {integration.id} changed", actor
        )
    return integration


async def remove(session: AsyncSession, integration: Integration, actor: audit.Actor) -> None:
    """Revoke the integration's leases, then delete it."""
    await leases.revoke_for_integration(
        session, integration.id, f"integration {integration.id} deleted", actor
    )
    await integrations.delete(session, integration, actor)
