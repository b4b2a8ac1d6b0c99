"""Organizations, their members, and the invitations through which members join.

A user becomes a member of an organization only by accepting an invitation, or when a
trusted caller (an administrator, seed-demo, the tests) adds them with :func:`add_member`.
A pending invitee is no member: membership rows are what credential resolution reads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tollgate.core.database import utcnow
from tollgate.core.errors import BadRequest, Conflict, NotFound
from tollgate.identity.models import (
    Invitation,
    InvitationStatus,
    Membership,
    Organization,
    OrgRole,
    User,
)
from tollgate.identity.service import get_user, normalise_email


@dataclass(frozen=True)
class OrgActor:
    """Who changes an organization, and from where (for the audit trail)."""

    user_id: int | None = None
    client_address: str | None = None


@dataclass(frozen=True)
class OrgChange:
    """A change to an organization's membership, announced to the change hooks."""

    action: str
    organization_id: int
    actor: OrgActor
    details: dict[str, Any] = field(default_factory=dict)


OrgChangeHook = Callable[[AsyncSession, OrgChange], None]
"""Called in the transaction that makes the change (the broker writes the audit row)."""

_change_hooks: list[OrgChangeHook] = []


def on_change(hook: OrgChangeHook) -> OrgChangeHook:
    """Register work that must happen with every announced membership change."""
    if hook not in _change_hooks:
        _change_hooks.append(hook)
    return hook


def _announce(session: AsyncSession, change: OrgChange) -> None:
    for hook in _change_hooks:
        hook(session, change)


MemberRemovedHook = Callable[[AsyncSession, int, int], Awaitable[object]]
"""Called with (session, organization id, user id) in the transaction that removes a member."""

_member_removed_hooks: list[MemberRemovedHook] = []


def on_member_removed(hook: MemberRemovedHook) -> MemberRemovedHook:
    """Register work that must happen whenever someone leaves an organization."""
    if hook not in _member_removed_hooks:
        _member_removed_hooks.append(hook)
    return hook


async def create_organization(
    session: AsyncSession, *, name: str, slug: str, owner: User | None
) -> Organization:
    """Create an organization, with ``owner`` as its first member."""
    org = Organization(name=name, slug=slug)
    session.add(org)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise Conflict("An organization with this slug exists", code="organization_exists") from exc
    if owner is not None:
        session.add(Membership(organization_id=org.id, user_id=owner.id, role=OrgRole.OWNER))
        await session.flush()
    return org


async def get_organization(
    session: AsyncSession, org_id: int, *, lock: bool = False
) -> Organization:
    """The organization with ``org_id``, or NotFound.

    With ``lock``, its row is locked for the rest of the transaction (``SELECT ... FOR
    UPDATE`` on PostgreSQL): changes to its owners take turns, and what is read after it
    (the caller's own role included) is what the previous change committed.
    """
    if lock:
        query = (
            select(Organization)
            .where(Organization.id == org_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        org = (await session.execute(query)).scalar_one_or_none()
    else:
        org = await session.get(Organization, org_id)
    if org is None:
        raise NotFound("Organization not found", code="organization_not_found")
    return org


async def list_organizations(
    session: AsyncSession, *, limit: int = 100, offset: int = 0
) -> Sequence[Organization]:
    """Organizations, oldest first."""
    query = select(Organization).order_by(Organization.id).limit(limit).offset(offset)
    return (await session.execute(query)).scalars().all()


async def delete_organization(session: AsyncSession, org: Organization) -> None:
    """Remove an organization and its memberships (each member leaves it, hooks and all)."""
    for membership, _ in await list_members(session, org):
        await remove_member(session, org, membership.user_id)
    await session.delete(org)
    await session.flush()


async def list_members(session: AsyncSession, org: Organization) -> list[tuple[Membership, User]]:
    """The organization's members with their users."""
    query = (
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.organization_id == org.id)
        .order_by(Membership.id)
    )
    return [(m, u) for m, u in (await session.execute(query)).all()]


async def add_member(
    session: AsyncSession,
    org: Organization,
    user_id: int,
    role: str,
    *,
    by: OrgActor | None = None,
) -> tuple[Membership, User]:
    """Add a user to an organization without asking them, or change a member's role.

    For trusted callers only (the admin API, seed-demo, tests): members invite instead.
    With ``by``, the change is announced (and so audited).
    """
    user = await get_user(session, user_id)
    existing = await find_membership(session, org.id, user_id)
    if existing is not None:
        previous = existing.role
        existing.role = role
        await session.flush()
        if by is not None:
            details = {"user_id": user_id, "from": previous, "to": role}
            _announce(session, OrgChange("member_role_changed", org.id, by, details))
        return existing, user
    membership = Membership(organization_id=org.id, user_id=user.id, role=role)
    session.add(membership)
    await session.flush()
    if by is not None:
        details = {"user_id": user_id, "role": role}
        _announce(session, OrgChange("member_added", org.id, by, details))
    return membership, user


async def find_membership(session: AsyncSession, org_id: int, user_id: int) -> Membership | None:
    """The user's membership of the organization, if any."""
    query = select(Membership).where(
        Membership.organization_id == org_id, Membership.user_id == user_id
    )
    return (await session.execute(query)).scalar_one_or_none()


async def remove_member(
    session: AsyncSession, org: Organization, user_id: int, *, by: OrgActor | None = None
) -> None:
    """Take a user out of an organization; with ``by``, the change is announced."""
    membership = await find_membership(session, org.id, user_id)
    if membership is None:
        raise NotFound("This user is not a member", code="member_not_found")
    await session.delete(membership)
    await session.flush()
    for hook in _member_removed_hooks:
        await hook(session, org.id, user_id)
    if by is not None:
        _announce(session, OrgChange("member_removed", org.id, by, {"user_id": user_id}))


async def ensure_an_owner_remains(session: AsyncSession, org_id: int, losing_user_id: int) -> None:
    """Conflict unless someone other than ``losing_user_id`` still owns the organization.

    The organization's row is locked first (``SELECT ... FOR UPDATE`` on PostgreSQL), so
    two owners demoting or removing each other at once take turns, and the second sees
    what the first committed; SQLite transactions are serialised already.
    """
    await session.execute(
        select(Organization.id).where(Organization.id == org_id).with_for_update()
    )
    others = await session.execute(
        select(Membership.id)
        .where(
            Membership.organization_id == org_id,
            Membership.role == OrgRole.OWNER,
            Membership.user_id != losing_user_id,
        )
        .limit(1)
    )
    if others.first() is None:
        raise Conflict("An organization keeps at least one owner", code="last_owner")


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
    session: AsyncSession, org: Organization, invitee: Invitee, role: str, *, by: OrgActor
) -> Invitation:
    """Invite someone to join ``org``; they become a member only once they accept.

    The answer is the same whether or not the named user exists. Inviting someone who
    has a pending invitation already updates that one's role.
    """
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
            invited_by_user_id=by.user_id,
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
    _announce(session, OrgChange("member_invited", org.id, by, details))
    return invitation


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


async def invitations_of(session: AsyncSession, org: Organization) -> Sequence[Invitation]:
    """The organization's pending invitations, oldest first."""
    rows = await session.execute(
        select(Invitation)
        .where(Invitation.organization_id == org.id, Invitation.status == InvitationStatus.PENDING)
        .order_by(Invitation.id)
    )
    return rows.scalars().all()


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
    session: AsyncSession, invitation_id: int, user: User, *, by: OrgActor
) -> tuple[Membership, Organization]:
    """The invitee joins the organization with the invited role (a member already keeps
    their role); NotFound for anyone but the invitee or an invitation no longer pending."""
    invitation = await _settle(session, invitation_id, _for_user(user), InvitationStatus.ACCEPTED)
    org = await get_organization(session, invitation.organization_id)
    membership = await find_membership(session, org.id, user.id)
    if membership is None:
        membership = Membership(organization_id=org.id, user_id=user.id, role=invitation.role)
        session.add(membership)
        await session.flush()
    details = {"invitation_id": invitation.id, "user_id": user.id, "role": membership.role}
    _announce(session, OrgChange("invitation_accepted", org.id, by, details))
    return membership, org


async def decline_invitation(
    session: AsyncSession, invitation_id: int, user: User, *, by: OrgActor
) -> Invitation:
    """The invitee says no; NotFound for anyone else or an invitation no longer pending."""
    invitation = await _settle(session, invitation_id, _for_user(user), InvitationStatus.DECLINED)
    details = {"invitation_id": invitation.id, "user_id": user.id}
    _announce(session, OrgChange("invitation_declined", invitation.organization_id, by, details))
    return invitation


async def cancel_invitation(
    session: AsyncSession, org: Organization, invitation_id: int, *, by: OrgActor
) -> Invitation:
    """Withdraw one of the organization's pending invitations (its managers do)."""
    condition = Invitation.organization_id == org.id
    invitation = await _settle(session, invitation_id, condition, InvitationStatus.CANCELLED)
    _announce(
        session,
        OrgChange("invitation_cancelled", org.id, by, {"invitation_id": invitation.id}),
    )
    return invitation
