"""Integrations (personal and organization) and organizations as their members manage them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from tollgate.broker import audit, integrations
from tollgate.broker import integration_changes as changes
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
from tollgate.core.errors import BadRequest, NotFound
from tollgate.identity import invitations
from tollgate.identity import organizations as orgs
from tollgate.identity.deps import require
from tollgate.identity.models import OrgRole, User
from tollgate.identity.schemas import InvitationOut, MemberOut

integrations_router = APIRouter(prefix="/api/v1/integrations", tags=["integrations"])
organizations_router = APIRouter(prefix="/api/v1/organizations", tags=["organizations"])
invitations_router = APIRouter(prefix="/api/v1/invitations", tags=["organizations"])

IntegrationUser = Annotated[User, Depends(require("integrations.manage"))]
OrgUser = Annotated[User, Depends(require("organizations.create"))]


def _actor(user: User, address: str) -> audit.Actor:
    return audit.Actor(user_id=user.id, client_address=address)


def _caller(user: User, address: str | None = None) -> orgs.Caller:
    return orgs.Caller(user=user, client_address=address)


@integrations_router.get("", response_model=list[IntegrationOut])
async def list_personal(
    user: IntegrationUser, session: SessionDep, runtime: RuntimeDep
) -> list[IntegrationOut]:
    """The caller's own integrations, secrets masked. JWT."""
    return await changes.personal(session, runtime.keyring, user)


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
    return await changes.describe_stored(session, runtime.keyring, integration)


@integrations_router.get("/{integration_id}", response_model=IntegrationOut)
async def read_personal(
    integration_id: PathId, user: IntegrationUser, session: SessionDep, runtime: RuntimeDep
) -> IntegrationOut:
    """One of the caller's integrations. JWT."""
    integration = await changes.own(session, integration_id, user)
    return await changes.describe(session, runtime.keyring, integration)


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
    integration = await changes.own(session, integration_id, user)
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
    integration = await changes.own(session, integration_id, user)
    await changes.remove(session, integration, _actor(user, address))
    return Response(status_code=204)


async def _apply_update(
    session: SessionDep,
    keyring: Keyring,
    integration: Integration,
    body: IntegrationUpdate,
    actor: audit.Actor,
) -> IntegrationOut:
    wanted = integrations.IntegrationChanges(
        name=body.name,
        credentials=body.credentials,
        status=IntegrationStatus(body.status) if body.status else None,
        shared_with=SharedWith(body.shared_with) if body.shared_with else None,
        shared_user_ids=tuple(body.shared_user_ids) if body.shared_user_ids is not None else None,
    )
    integration = await changes.change(session, keyring, integration, wanted, actor)
    return await changes.describe_stored(session, keyring, integration)


@organizations_router.post("", response_model=MyOrganization, status_code=201)
async def create_organization(
    body: OrganizationCreateBody, user: OrgUser, session: SessionDep, address: ClientAddress
) -> MyOrganization:
    """Create an organization; the creator becomes its owner. JWT."""
    by = _caller(user, address).actor
    org = await orgs.create_organization(session, name=body.name, slug=body.slug, owner=user, by=by)
    return MyOrganization.of(org, OrgRole.OWNER)


@organizations_router.get("", response_model=list[MyOrganization])
async def my_organizations(user: OrgUser, session: SessionDep) -> list[MyOrganization]:
    """The organizations the caller belongs to, with their role. JWT."""
    return [MyOrganization.of(o, r) for o, r in await orgs.organizations_of(session, user.id)]


@organizations_router.get("/{org_id}", response_model=MyOrganization)
async def read_organization(org_id: PathId, user: OrgUser, session: SessionDep) -> MyOrganization:
    """An organization the caller belongs to. Members (and admins)."""
    org, membership = await orgs.organization_for(session, org_id, _caller(user))
    return MyOrganization.of(org, membership.role if membership else None)


@organizations_router.get("/{org_id}/members", response_model=list[MemberOut])
async def list_members(org_id: PathId, user: OrgUser, session: SessionDep) -> list[MemberOut]:
    """The organization's members. Members (and admins)."""
    return [MemberOut.of(m, u) for m, u in await orgs.list_members(session, org_id, _caller(user))]


@organizations_router.post("/{org_id}/members", response_model=InvitationOut, status_code=202)
async def invite_member(
    org_id: PathId, body: MemberInvite, user: OrgUser, session: SessionDep, address: ClientAddress
) -> InvitationOut:
    """Invite a user by id or email; they join only once they accept. The answer shows the
    invitee only as given, the same whether or not such a user exists. Owners and admins;
    only owners invite owners."""
    invitee = invitations.Invitee(user_id=body.user_id, email=body.email)
    invitation, org = await invitations.invite(
        session, org_id, invitee, body.role, _caller(user, address)
    )
    return InvitationOut.of(invitation, org)


@organizations_router.get("/{org_id}/invitations", response_model=list[InvitationOut])
async def list_invitations(
    org_id: PathId, user: OrgUser, session: SessionDep
) -> list[InvitationOut]:
    """The organization's pending invitations. Owners and admins."""
    org, pending = await invitations.invitations_of(session, org_id, _caller(user))
    return [InvitationOut.of(i, org) for i in pending]


@organizations_router.delete("/{org_id}/invitations/{invitation_id}", status_code=204)
async def cancel_invitation(
    org_id: PathId,
    invitation_id: PathId,
    user: OrgUser,
    session: SessionDep,
    address: ClientAddress,
) -> Response:
    """Withdraw a pending invitation. Owners and admins."""
    await invitations.cancel_invitation(session, org_id, invitation_id, _caller(user, address))
    return Response(status_code=204)


@invitations_router.get("", response_model=list[InvitationOut])
async def my_invitations(user: OrgUser, session: SessionDep) -> list[InvitationOut]:
    """The caller's pending invitations. JWT."""
    return [InvitationOut.of(i, o) for i, o in await invitations.invitations_for(session, user)]


@invitations_router.post("/{invitation_id}/accept", response_model=MyOrganization)
async def accept_invitation(
    invitation_id: PathId, user: OrgUser, session: SessionDep, address: ClientAddress
) -> MyOrganization:
    """Join the organization that invited the caller. The invitee only."""
    membership, org = await invitations.accept_invitation(
        session, invitation_id, _caller(user, address)
    )
    return MyOrganization.of(org, membership.role)


@invitations_router.post("/{invitation_id}/decline", status_code=204)
async def decline_invitation(
    invitation_id: PathId, user: OrgUser, session: SessionDep, address: ClientAddress
) -> Response:
    """Refuse an invitation. The invitee only."""
    await invitations.decline_invitation(session, invitation_id, _caller(user, address))
    return Response(status_code=204)


@organizations_router.patch("/{org_id}/members/{member_id}", response_model=MemberOut)
async def change_member_role(
    org_id: PathId,
    member_id: PathId,
    body: MemberRole,
    user: OrgUser,
    session: SessionDep,
    address: ClientAddress,
) -> MemberOut:
    """Change a member's role; an owner or admin made a plain member loses their leases of
    the organization's credentials. Owners and admins; only owners touch owners."""
    membership, member = await orgs.change_member_role(
        session, org_id, member_id, body.role, _caller(user, address)
    )
    return MemberOut.of(membership, member)


@organizations_router.delete("/{org_id}/members/{member_id}", status_code=204)
async def remove_member(
    org_id: PathId, member_id: PathId, user: OrgUser, session: SessionDep, address: ClientAddress
) -> Response:
    """Remove a member (or leave); their leases carrying this organization's credentials are
    revoked. Owners and admins, or the member themselves."""
    await orgs.remove_member(session, org_id, member_id, _caller(user, address))
    return Response(status_code=204)


@organizations_router.get("/{org_id}/integrations", response_model=list[IntegrationOut])
async def list_org_integrations(
    org_id: PathId, user: IntegrationUser, session: SessionDep, runtime: RuntimeDep
) -> list[IntegrationOut]:
    """The organization's integrations the caller may see (managers see all). Members."""
    await orgs.get_organization(session, org_id)
    membership = await orgs.require_member(session, org_id, user)
    found = await integrations.of_organization(session, org_id)
    return [
        await changes.describe(session, runtime.keyring, i)
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
    await orgs.require_member(session, org_id, user, manage=True)
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
    return await changes.describe_stored(session, runtime.keyring, integration)


async def _org_integration(
    session: SessionDep, org_id: int, integration_id: int, user: User, *, manage: bool
) -> Integration:
    await orgs.get_organization(session, org_id)
    membership = await orgs.require_member(session, org_id, user, manage=manage)
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
    return await changes.describe(session, runtime.keyring, integration)


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
    await changes.remove(session, integration, _actor(user, address))
    return Response(status_code=204)
