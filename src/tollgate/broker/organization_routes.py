"""Integrations (personal and organization) and organizations as their members manage them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from sqlalchemy import select

from tollgate.broker import audit, catalogue, integrations, leases
from tollgate.broker.models import Integration, IntegrationStatus, SharedWith
from tollgate.broker.schemas import (
    IntegrationCreate,
    IntegrationOut,
    IntegrationUpdate,
    MemberInvite,
    MemberRole,
    MyOrganization,
    OrganizationCreateBody,
    OrgIntegrationCreate,
)
from tollgate.core.crypto import Keyring
from tollgate.core.deps import ClientAddress, PathId, RuntimeDep, SessionDep
from tollgate.core.errors import BadRequest, Forbidden, NotFound
from tollgate.identity import organizations as orgs
from tollgate.identity.deps import require
from tollgate.identity.models import Membership, Organization, OrgRole, User
from tollgate.identity.schemas import InvitationOut, MemberOut

integrations_router = APIRouter(prefix="/api/v1/integrations", tags=["integrations"])
organizations_router = APIRouter(prefix="/api/v1/organizations", tags=["organizations"])
invitations_router = APIRouter(prefix="/api/v1/invitations", tags=["organizations"])

IntegrationUser = Annotated[User, Depends(require("integrations.manage"))]
OrgUser = Annotated[User, Depends(require("organizations.create"))]


def _actor(user: User, address: str) -> audit.Actor:
    return audit.Actor(user_id=user.id, client_address=address)


def _org_actor(user: User, address: str) -> orgs.OrgActor:
    return orgs.OrgActor(user_id=user.id, client_address=address)


async def _out(session: SessionDep, keyring: Keyring, integration: Integration) -> IntegrationOut:
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


async def _refresh_out(
    session: SessionDep, keyring: Keyring, integration: Integration
) -> IntegrationOut:
    await session.refresh(integration)
    return await _out(session, keyring, integration)


@integrations_router.get("", response_model=list[IntegrationOut])
async def list_personal(
    user: IntegrationUser, session: SessionDep, runtime: RuntimeDep
) -> list[IntegrationOut]:
    """The caller's own integrations, secrets masked. JWT."""
    return [
        await _out(session, runtime.keyring, i) for i in await integrations.personal(session, user)
    ]


@integrations_router.post("", response_model=IntegrationOut, status_code=201)
async def create_personal(
    body: IntegrationCreate,
    user: IntegrationUser,
    session: SessionDep,
    runtime: RuntimeDep,
    address: ClientAddress,
) -> IntegrationOut:
    """Store credentials for a service, for the caller only. JWT."""
    integration = await integrations.create(
        session,
        runtime.keyring,
        integrations.IntegrationInput(
            service=body.service,
            name=body.name,
            credentials=body.credentials,
            status=IntegrationStatus(body.status),
        ),
        owner_user=user,
        owner_org=None,
        actor=_actor(user, address),
    )
    return await _refresh_out(session, runtime.keyring, integration)


async def _own_integration(session: SessionDep, integration_id: int, user: User) -> Integration:
    integration = await integrations.get(session, integration_id)
    if integration.user_id != user.id:
        raise NotFound("Integration not found", code="integration_not_found")
    return integration


@integrations_router.get("/{integration_id}", response_model=IntegrationOut)
async def read_personal(
    integration_id: PathId, user: IntegrationUser, session: SessionDep, runtime: RuntimeDep
) -> IntegrationOut:
    """One of the caller's integrations. JWT."""
    return await _out(
        session, runtime.keyring, await _own_integration(session, integration_id, user)
    )


@integrations_router.patch("/{integration_id}", response_model=IntegrationOut)
async def update_personal(
    integration_id: PathId,
    body: IntegrationUpdate,
    user: IntegrationUser,
    session: SessionDep,
    runtime: RuntimeDep,
    address: ClientAddress,
) -> IntegrationOut:
    """Change one of the caller's integrations; disabling it revokes its leases. JWT."""
    integration = await _own_integration(session, integration_id, user)
    if body.shared_with is not None or body.shared_user_ids is not None:
        raise BadRequest("Personal integrations are not shared", code="not_shareable")
    return await _apply_update(session, runtime.keyring, integration, body, _actor(user, address))


@integrations_router.delete("/{integration_id}", status_code=204)
async def delete_personal(
    integration_id: PathId,
    user: IntegrationUser,
    session: SessionDep,
    address: ClientAddress,
) -> Response:
    """Delete one of the caller's integrations and revoke its leases. JWT."""
    integration = await _own_integration(session, integration_id, user)
    await _delete(session, integration, _actor(user, address))
    return Response(status_code=204)


async def _apply_update(
    session: SessionDep,
    keyring: Keyring,
    integration: Integration,
    body: IntegrationUpdate,
    actor: audit.Actor,
) -> IntegrationOut:
    changes = integrations.IntegrationChanges(
        name=body.name,
        credentials=body.credentials,
        status=IntegrationStatus(body.status) if body.status else None,
        shared_with=SharedWith(body.shared_with) if body.shared_with else None,
        shared_user_ids=tuple(body.shared_user_ids) if body.shared_user_ids is not None else None,
    )
    integration, revoke = await integrations.update(session, keyring, integration, changes, actor)
    if revoke:
        await leases.revoke_for_integration(
            session, integration.id, f"integration {integration.id} changed", actor
        )
    return await _refresh_out(session, keyring, integration)


async def _delete(session: SessionDep, integration: Integration, actor: audit.Actor) -> None:
    await leases.revoke_for_integration(
        session, integration.id, f"integration {integration.id} deleted", actor
    )
    await integrations.delete(session, integration, actor)


@organizations_router.post("", response_model=MyOrganization, status_code=201)
async def create_organization(
    body: OrganizationCreateBody, user: OrgUser, session: SessionDep, address: ClientAddress
) -> MyOrganization:
    """Create an organization; the creator becomes its owner. JWT."""
    org = await orgs.create_organization(session, name=body.name, slug=body.slug, owner=user)
    audit.record(
        session,
        "organization_created",
        _actor(user, address),
        target_type="organization",
        target_id=org.id,
        details={"slug": org.slug},
    )
    return MyOrganization(
        id=org.id, name=org.name, slug=org.slug, role=OrgRole.OWNER, created_at=org.created_at
    )


@organizations_router.get("", response_model=list[MyOrganization])
async def my_organizations(user: OrgUser, session: SessionDep) -> list[MyOrganization]:
    """The organizations the caller belongs to, with their role. JWT."""
    rows = await session.execute(
        select(Organization, Membership.role)
        .join(Membership, Membership.organization_id == Organization.id)
        .where(Membership.user_id == user.id)
        .order_by(Organization.id)
    )
    return [
        MyOrganization(id=o.id, name=o.name, slug=o.slug, role=r, created_at=o.created_at)
        for o, r in rows.all()
    ]


@organizations_router.get("/{org_id}", response_model=MyOrganization)
async def read_organization(org_id: PathId, user: OrgUser, session: SessionDep) -> MyOrganization:
    """An organization the caller belongs to. Members (and admins)."""
    org = await orgs.get_organization(session, org_id)
    membership = await integrations.require_member(session, org_id, user)
    return MyOrganization(
        id=org.id,
        name=org.name,
        slug=org.slug,
        role=membership.role if membership else None,
        created_at=org.created_at,
    )


@organizations_router.get("/{org_id}/members", response_model=list[MemberOut])
async def list_members(org_id: PathId, user: OrgUser, session: SessionDep) -> list[MemberOut]:
    """The organization's members. Members (and admins)."""
    org = await orgs.get_organization(session, org_id)
    await integrations.require_member(session, org_id, user)
    return [MemberOut.of(m, u) for m, u in await orgs.list_members(session, org)]


@organizations_router.post("/{org_id}/members", response_model=InvitationOut, status_code=202)
async def invite_member(
    org_id: PathId, body: MemberInvite, user: OrgUser, session: SessionDep, address: ClientAddress
) -> InvitationOut:
    """Invite a user by id or email; they join only once they accept. The answer shows the
    invitee only as given, the same whether or not such a user exists. Owners and admins;
    only owners invite owners."""
    org = await orgs.get_organization(session, org_id)
    manager = await integrations.require_member(session, org_id, user, manage=True)
    _check_role_grant(manager, body.role)
    invitee = orgs.Invitee(user_id=body.user_id, email=body.email)
    invitation = await orgs.invite(session, org, invitee, body.role, by=_org_actor(user, address))
    return InvitationOut.of(invitation, org)


@organizations_router.get("/{org_id}/invitations", response_model=list[InvitationOut])
async def list_invitations(
    org_id: PathId, user: OrgUser, session: SessionDep
) -> list[InvitationOut]:
    """The organization's pending invitations. Owners and admins."""
    org = await orgs.get_organization(session, org_id)
    await integrations.require_member(session, org_id, user, manage=True)
    return [InvitationOut.of(i, org) for i in await orgs.invitations_of(session, org)]


@organizations_router.delete("/{org_id}/invitations/{invitation_id}", status_code=204)
async def cancel_invitation(
    org_id: PathId,
    invitation_id: PathId,
    user: OrgUser,
    session: SessionDep,
    address: ClientAddress,
) -> Response:
    """Withdraw a pending invitation. Owners and admins."""
    org = await orgs.get_organization(session, org_id)
    await integrations.require_member(session, org_id, user, manage=True)
    await orgs.cancel_invitation(session, org, invitation_id, by=_org_actor(user, address))
    return Response(status_code=204)


@invitations_router.get("", response_model=list[InvitationOut])
async def my_invitations(user: OrgUser, session: SessionDep) -> list[InvitationOut]:
    """The caller's pending invitations. JWT."""
    return [InvitationOut.of(i, o) for i, o in await orgs.invitations_for(session, user)]


@invitations_router.post("/{invitation_id}/accept", response_model=MyOrganization)
async def accept_invitation(
    invitation_id: PathId, user: OrgUser, session: SessionDep, address: ClientAddress
) -> MyOrganization:
    """Join the organization that invited the caller. The invitee only."""
    membership, org = await orgs.accept_invitation(
        session, invitation_id, user, by=_org_actor(user, address)
    )
    return MyOrganization(
        id=org.id, name=org.name, slug=org.slug, role=membership.role, created_at=org.created_at
    )


@invitations_router.post("/{invitation_id}/decline", status_code=204)
async def decline_invitation(
    invitation_id: PathId, user: OrgUser, session: SessionDep, address: ClientAddress
) -> Response:
    """Refuse an invitation. The invitee only."""
    await orgs.decline_invitation(session, invitation_id, user, by=_org_actor(user, address))
    return Response(status_code=204)


def _check_role_grant(manager: Membership | None, role: str) -> None:
    if role == OrgRole.OWNER and manager is not None and manager.role != OrgRole.OWNER:
        raise Forbidden("Only owners can make owners", code="not_org_owner")


@organizations_router.patch("/{org_id}/members/{member_id}", response_model=MemberOut)
async def change_member_role(
    org_id: PathId,
    member_id: PathId,
    body: MemberRole,
    user: OrgUser,
    session: SessionDep,
    address: ClientAddress,
) -> MemberOut:
    """Change a member's role. Owners and admins; only owners touch owners."""
    org = await orgs.get_organization(session, org_id, lock=True)
    manager = await integrations.require_member(session, org_id, user, manage=True)
    current = await orgs.find_membership(session, org_id, member_id)
    if current is None:
        raise NotFound("This user is not a member", code="member_not_found")
    _check_role_grant(manager, body.role)
    _check_role_grant(manager, current.role)
    if current.role == OrgRole.OWNER and body.role != "owner":
        await orgs.ensure_an_owner_remains(session, org_id, member_id)
    previous = current.role
    membership, member = await orgs.add_member(session, org, member_id, body.role)
    actor = _actor(user, address)
    audit.record(
        session,
        "member_role_changed",
        actor,
        target_type="organization",
        target_id=org_id,
        details={"user_id": member_id, "from": previous, "to": body.role},
    )
    if previous in integrations.MANAGER_ROLES and body.role not in integrations.MANAGER_ROLES:
        await leases.revoke_for_membership(session, org_id, member_id, "member role lowered", actor)
    return MemberOut.of(membership, member)


@organizations_router.delete("/{org_id}/members/{member_id}", status_code=204)
async def remove_member(
    org_id: PathId, member_id: PathId, user: OrgUser, session: SessionDep, address: ClientAddress
) -> Response:
    """Remove a member (or leave); their leases carrying this organization's credentials are
    revoked (by the membership hook). Owners and admins, or the member themselves."""
    org = await orgs.get_organization(session, org_id, lock=True)
    leaving = member_id == user.id
    manager = await integrations.require_member(session, org_id, user, manage=not leaving)
    current = await orgs.find_membership(session, org_id, member_id)
    if current is None:
        raise NotFound("This user is not a member", code="member_not_found")
    if not leaving:
        _check_role_grant(manager, current.role)
    if current.role == OrgRole.OWNER:
        await orgs.ensure_an_owner_remains(session, org_id, member_id)
    actor = _actor(user, address)
    await orgs.remove_member(session, org, member_id)
    audit.record(
        session,
        "member_removed",
        actor,
        target_type="organization",
        target_id=org_id,
        details={"user_id": member_id},
    )
    return Response(status_code=204)


@organizations_router.get("/{org_id}/integrations", response_model=list[IntegrationOut])
async def list_org_integrations(
    org_id: PathId, user: IntegrationUser, session: SessionDep, runtime: RuntimeDep
) -> list[IntegrationOut]:
    """The organization's integrations the caller may see (managers see all). Members."""
    await orgs.get_organization(session, org_id)
    membership = await integrations.require_member(session, org_id, user)
    found = await integrations.of_organization(session, org_id)
    return [
        await _out(session, runtime.keyring, i)
        for i in found
        if integrations.can_see(i, user, membership)
    ]


@organizations_router.post("/{org_id}/integrations", response_model=IntegrationOut, status_code=201)
async def create_org_integration(
    org_id: PathId,
    body: OrgIntegrationCreate,
    user: IntegrationUser,
    session: SessionDep,
    runtime: RuntimeDep,
    address: ClientAddress,
) -> IntegrationOut:
    """Store credentials for the organization. Owners and admins."""
    org = await orgs.get_organization(session, org_id)
    await integrations.require_member(session, org_id, user, manage=True)
    integration = await integrations.create(
        session,
        runtime.keyring,
        integrations.IntegrationInput(
            service=body.service,
            name=body.name,
            credentials=body.credentials,
            status=IntegrationStatus(body.status),
            shared_with=SharedWith(body.shared_with),
            shared_user_ids=tuple(body.shared_user_ids),
        ),
        owner_user=None,
        owner_org=org,
        actor=_actor(user, address),
    )
    return await _refresh_out(session, runtime.keyring, integration)


async def _org_integration(
    session: SessionDep, org_id: int, integration_id: int, user: User, *, manage: bool
) -> Integration:
    await orgs.get_organization(session, org_id)
    membership = await integrations.require_member(session, org_id, user, manage=manage)
    integration = await integrations.get(session, integration_id)
    if integration.organization_id != org_id or not integrations.can_see(
        integration, user, membership
    ):
        raise NotFound("Integration not found", code="integration_not_found")
    return integration


@organizations_router.get("/{org_id}/integrations/{integration_id}", response_model=IntegrationOut)
async def read_org_integration(
    org_id: PathId,
    integration_id: PathId,
    user: IntegrationUser,
    session: SessionDep,
    runtime: RuntimeDep,
) -> IntegrationOut:
    """One organization integration, secrets masked. Members it is shared with."""
    integration = await _org_integration(session, org_id, integration_id, user, manage=False)
    return await _out(session, runtime.keyring, integration)


@organizations_router.patch(
    "/{org_id}/integrations/{integration_id}", response_model=IntegrationOut
)
async def update_org_integration(
    org_id: PathId,
    integration_id: PathId,
    body: IntegrationUpdate,
    user: IntegrationUser,
    session: SessionDep,
    runtime: RuntimeDep,
    address: ClientAddress,
) -> IntegrationOut:
    """Change an organization integration; disabling or re-sharing it revokes its leases.
    Owners and admins."""
    integration = await _org_integration(session, org_id, integration_id, user, manage=True)
    return await _apply_update(session, runtime.keyring, integration, body, _actor(user, address))


@organizations_router.delete("/{org_id}/integrations/{integration_id}", status_code=204)
async def delete_org_integration(
    org_id: PathId,
    integration_id: PathId,
    user: IntegrationUser,
    session: SessionDep,
    address: ClientAddress,
) -> Response:
    """Delete an organization integration and revoke its leases. Owners and admins."""
    integration = await _org_integration(session, org_id, integration_id, user, manage=True)
    await _delete(session, integration, _actor(user, address))
    return Response(status_code=204)
