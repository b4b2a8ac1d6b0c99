"""Organizations as their members see them: mine, creating one, its members, inviting by
email, and the invitations addressed to me (accept or decline) or pending in an
organization I manage (cancel). Every route needs ``organizations.create``, as
``/api/v1/organizations`` and ``/api/v1/invitations`` do; the organization's own rules
(who may invite, who may cancel) are its service's."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from tollgate.broker.schemas import MemberInvite, MyOrganization, OrganizationCreateBody
from tollgate.core.database import commit
from tollgate.core.deps import PathId
from tollgate.core.errors import TollgateError
from tollgate.identity import invitations
from tollgate.identity import organizations as orgs
from tollgate.identity.schemas import InvitationOut, MemberOut
from tollgate.web.pages import PageRoute, Visit, posting, problem, undone_if_refused, visiting
from tollgate.web.session import PAGES_PATH

router = APIRouter(include_in_schema=False, route_class=PageRoute)
OrgVisit = Annotated[Visit, Depends(visiting("organizations.create"))]
OrgPost = Annotated[Visit, Depends(posting("organizations.create"))]
ORGANIZATIONS = f"{PAGES_PATH}/organizations"
INVITATIONS = f"{PAGES_PATH}/invitations"

ROLES = ("member", "admin", "owner")
"""The roles an invitation offers, the least first (only owners may invite owners)."""


def _caller(visit: Visit) -> orgs.Caller:
    return orgs.Caller(user=visit.user, client_address=visit.address)


async def _list_view(visit: Visit, **extra: Any) -> HTMLResponse:
    mine = await orgs.organizations_of(visit.session, visit.user.id)
    invited = await invitations.invitations_for(visit.session, visit.user)
    return visit.render(
        "organizations.html",
        organizations=[MyOrganization.of(o, r) for o, r in mine],
        invited=[InvitationOut.of(i, o) for i, o in invited],
        **extra,
    )


@router.get(ORGANIZATIONS)
async def organizations_page(visit: OrgVisit) -> HTMLResponse:
    """My organizations, the invitations addressed to me, and the form to create one. Needs
    ``organizations.create``."""
    return await _list_view(visit)


@router.post(ORGANIZATIONS)
async def create_organization(
    visit: OrgPost,
    name: Annotated[str, Form(max_length=200)] = "",
    slug: Annotated[str, Form(max_length=64)] = "",
) -> HTMLResponse:
    """Create an organization; its creator becomes its owner. Needs ``organizations.create``."""
    try:
        body = OrganizationCreateBody(name=name, slug=slug)
        async with undone_if_refused(visit.session):
            org = await orgs.create_organization(
                visit.session,
                name=body.name,
                slug=body.slug,
                owner=visit.user,
                by=_caller(visit).actor,
            )
    except (ValidationError, TollgateError) as refused:
        return await _list_view(visit, error=problem(refused), error_for="create")
    await commit(visit.session)
    return await _organization_view(visit, org.id, notice=f"Created {org.name}.")


@router.post(f"{INVITATIONS}/{{invitation_id}}/accept")
async def accept_invitation(invitation_id: PathId, visit: OrgPost) -> HTMLResponse:
    """Join the organization that invited me. The invitee only."""
    _, org = await invitations.accept_invitation(visit.session, invitation_id, _caller(visit))
    await commit(visit.session)
    return await _list_view(visit, notice=f"You joined {org.name}.")


@router.post(f"{INVITATIONS}/{{invitation_id}}/decline")
async def decline_invitation(invitation_id: PathId, visit: OrgPost) -> HTMLResponse:
    """Refuse an invitation. The invitee only."""
    await invitations.decline_invitation(visit.session, invitation_id, _caller(visit))
    await commit(visit.session)
    return await _list_view(visit, notice="Invitation declined.")


async def _organization_view(visit: Visit, org_id: int, **extra: Any) -> HTMLResponse:
    org, membership = await orgs.organization_for(visit.session, org_id, _caller(visit))
    members = await orgs.list_members(visit.session, org_id, _caller(visit))
    manages = membership is None or membership.role in orgs.MANAGER_ROLES
    pending = (
        (await invitations.invitations_of(visit.session, org_id, _caller(visit)))[1]
        if manages
        else []
    )
    return visit.render(
        "organization.html",
        organization=MyOrganization.of(org, membership.role if membership else None),
        members=[MemberOut.of(m, u) for m, u in members],
        pending=[InvitationOut.of(i, org) for i in pending],
        manages=manages,
        roles=ROLES,
        **extra,
    )


@router.get(f"{ORGANIZATIONS}/{{org_id}}")
async def organization_page(org_id: PathId, visit: OrgVisit) -> HTMLResponse:
    """An organization's members and, for its owners and admins, its pending invitations
    and the form to invite someone. Its members (and gateway admins)."""
    return await _organization_view(visit, org_id)


@router.post(f"{ORGANIZATIONS}/{{org_id}}/invitations")
async def invite(
    org_id: PathId,
    visit: OrgPost,
    email: Annotated[str, Form(max_length=320)] = "",
    role: Annotated[str, Form(max_length=16)] = "member",
) -> HTMLResponse:
    """Invite someone by email; they join only once they accept. Owners and admins; only
    owners invite owners."""
    try:
        body = MemberInvite.model_validate({"email": email, "role": role})
        invitee = invitations.Invitee(email=body.email)
        async with undone_if_refused(visit.session):
            await invitations.invite(visit.session, org_id, invitee, body.role, _caller(visit))
    except (ValidationError, TollgateError) as refused:
        return await _organization_view(visit, org_id, error=problem(refused), error_for="invite")
    await commit(visit.session)
    notice = f"Invited {body.email}: they join once they accept."
    return await _organization_view(visit, org_id, notice=notice)


@router.post(f"{ORGANIZATIONS}/{{org_id}}/invitations/{{invitation_id}}/cancel")
async def cancel_invitation(org_id: PathId, invitation_id: PathId, visit: OrgPost) -> HTMLResponse:
    """Withdraw a pending invitation. Owners and admins."""
    await invitations.cancel_invitation(visit.session, org_id, invitation_id, _caller(visit))
    await commit(visit.session)
    return await _organization_view(visit, org_id, notice="Invitation cancelled.")
