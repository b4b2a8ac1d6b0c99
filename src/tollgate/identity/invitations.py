"""Invitations: how members join an organization (they become members only once they accept).

The rules of :mod:`.organizations` apply: its managers invite, only owners invite owners,
and every step is announced to the change hooks (the audit trail).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tollgate.core.database import utcnow
from tollgate.core.errors import BadRequest, Conflict, NotFound
from tollgate.identity.models import (
    Invitation,
    InvitationStatus,
    Membership,
    Organization,
    User,
)
from tollgate.identity.organizations import (
    Caller,
    OrgChange,
    announce,
    authority,
    check_role_grant,
    find_membership,
    get_organization,
)
from tollgate.identity.service import normalise_email


@dataclass(frozen=True)
class Invitee:
    """Whom an invitation is for, exactly as the inviter named them."""

    user_id: int | None = None
    email: str | None = None


def _addressed_to(invitee: Invitee) -> Any:
    if invitee.user_id is not None:
        return Invitation.invitee_user_id == invitee.user_id
    return (Invitation.invitee_user_id.is_(None)) & (
        Invitation.invitee_email == normalise_email(invitee.email or "")
    )


async def _is_member_already(session: AsyncSession, org_id: int, invitee: Invitee) -> bool:
    """Whether the invitee is a member: only co-members are disclosed, never other users."""
    query = select(Membership.id).where(Membership.organization_id == org_id)
    if invitee.user_id is not None:
        query = query.where(Membership.user_id == invitee.user_id)
    else:
        query = query.join(User, User.id == Membership.user_id).where(
            User.email == normalise_email(invitee.email or "")
        )
    return (await session.execute(query.limit(1))).first() is not None


async def invite(
    session: AsyncSession, org_id: int, invitee: Invitee, role: str, caller: Caller
) -> tuple[Invitation, Organization]:
    """Invite someone to join the organization; they become a member only once they accept.

    Owners and admins; only owners invite owners. The answer is the same whether or not
    the named user exists. Inviting someone who has a pending invitation already updates
    that one's role.
    """
    org = await get_organization(session, org_id)
    check_role_grant(await authority(session, org_id, caller, manage=True), role)
    if invitee.user_id is None and not (invitee.email and invitee.email.strip()):
        raise BadRequest("Give user_id or email", code="member_not_named")
    if await _is_member_already(session, org.id, invitee):
        raise Conflict("This user is a member already", code="already_member")
    pending = await session.execute(
        select(Invitation).where(
            Invitation.organization_id == org.id,
            Invitation.status == InvitationStatus.PENDING,
            _addressed_to(invitee),
        )
    )
    invitation = pending.scalars().first()
    if invitation is None:
        invitation = Invitation(
            organization_id=org.id,
            invitee_user_id=invitee.user_id,
            invitee_email=None
            if invitee.user_id is not None
            else normalise_email(invitee.email or ""),
            status=InvitationStatus.PENDING,
            invited_by_user_id=caller.user.id,
        )
        session.add(invitation)
    invitation.role = role
    await session.flush()
    named = (
        {"user_id": invitee.user_id}
        if invitee.user_id is not None
        else {"email": invitation.invitee_email}
    )
    details = {"invitation_id": invitation.id, "role": role, **named}
    announce(session, OrgChange("member_invited", org.id, caller.actor, details))
    return invitation, org


def _for_user(user: User) -> Any:
    return or_(
        Invitation.invitee_user_id == user.id,
        Invitation.invitee_user_id.is_(None) & (Invitation.invitee_email == user.email),
    )


async def invitations_for(
    session: AsyncSession, user: User
) -> list[tuple[Invitation, Organization]]:
    """The user's pending invitations with their organizations, oldest first."""
    rows = await session.execute(
        select(Invitation, Organization)
        .join(Organization, Organization.id == Invitation.organization_id)
        .where(Invitation.status == InvitationStatus.PENDING, _for_user(user))
        .order_by(Invitation.id)
    )
    return [(i, o) for i, o in rows.all()]


async def invitations_of(
    session: AsyncSession, org_id: int, caller: Caller
) -> tuple[Organization, Sequence[Invitation]]:
    """The organization's pending invitations, oldest first. Owners and admins."""
    org = await get_organization(session, org_id)
    await authority(session, org_id, caller, manage=True)
    rows = await session.execute(
        select(Invitation)
        .where(Invitation.organization_id == org.id, Invitation.status == InvitationStatus.PENDING)
        .order_by(Invitation.id)
    )
    return org, rows.scalars().all()


def _no_invitation() -> NotFound:
    return NotFound("Invitation not found", code="invitation_not_found")


async def _settle(
    session: AsyncSession, invitation_id: int, condition: Any, status: str
) -> Invitation:
    """Move a pending invitation matching ``condition`` to ``status``, once (race-safe)."""
    result = await session.execute(
        update(Invitation)
        .where(
            Invitation.id == invitation_id,
            Invitation.status == InvitationStatus.PENDING,
            condition,
        )
        .values(status=status, responded_at=utcnow())
        .returning(Invitation.id)
    )
    if result.first() is None:
        raise _no_invitation()
    invitation = await session.get(Invitation, invitation_id, populate_existing=True)
    if invitation is None:
        raise _no_invitation()
    return invitation


async def accept_invitation(
    session: AsyncSession, invitation_id: int, caller: Caller
) -> tuple[Membership, Organization]:
    """The invitee joins the organization with the invited role (a member already keeps
    their role); NotFound for anyone but the invitee or an invitation no longer pending."""
    user = caller.user
    invitation = await _settle(session, invitation_id, _for_user(user), InvitationStatus.ACCEPTED)
    org = await get_organization(session, invitation.organization_id)
    membership = await find_membership(session, org.id, user.id)
    if membership is None:
        membership = Membership(organization_id=org.id, user_id=user.id, role=invitation.role)
        session.add(membership)
        await session.flush()
    details = {"invitation_id": invitation.id, "user_id": user.id, "role": membership.role}
    announce(session, OrgChange("invitation_accepted", org.id, caller.actor, details))
    return membership, org


async def decline_invitation(
    session: AsyncSession, invitation_id: int, caller: Caller
) -> Invitation:
    """The invitee says no; NotFound for anyone else or an invitation no longer pending."""
    user = caller.user
    invitation = await _settle(session, invitation_id, _for_user(user), InvitationStatus.DECLINED)
    details = {"invitation_id": invitation.id, "user_id": user.id}
    announce(
        session,
        OrgChange("invitation_declined", invitation.organization_id, caller.actor, details),
    )
    return invitation


async def cancel_invitation(
    session: AsyncSession, org_id: int, invitation_id: int, caller: Caller
) -> Invitation:
    """Withdraw one of the organization's pending invitations. Owners and admins."""
    org = await get_organization(session, org_id)
    await authority(session, org_id, caller, manage=True)
    condition = Invitation.organization_id == org.id
    invitation = await _settle(session, invitation_id, condition, InvitationStatus.CANCELLED)
    announce(
        session,
        OrgChange("invitation_cancelled", org.id, caller.actor, {"invitation_id": invitation.id}),
    )
    return invitation
