"""Organizations and their members."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tollgate.core.errors import Conflict, NotFound
from tollgate.identity.models import Membership, Organization, OrgRole, User
from tollgate.identity.service import get_user

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


async def get_organization(session: AsyncSession, org_id: int) -> Organization:
    """The organization with ``org_id``, or NotFound."""
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
    session: AsyncSession, org: Organization, user_id: int, role: str
) -> tuple[Membership, User]:
    """Add a user to an organization, or change the role of one already in it."""
    user = await get_user(session, user_id)
    existing = await find_membership(session, org.id, user_id)
    if existing is not None:
        existing.role = role
        await session.flush()
        return existing, user
    membership = Membership(organization_id=org.id, user_id=user.id, role=role)
    session.add(membership)
    await session.flush()
    return membership, user


async def find_membership(session: AsyncSession, org_id: int, user_id: int) -> Membership | None:
    """The user's membership of the organization, if any."""
    query = select(Membership).where(
        Membership.organization_id == org_id, Membership.user_id == user_id
    )
    return (await session.execute(query)).scalar_one_or_none()


async def remove_member(session: AsyncSession, org: Organization, user_id: int) -> None:
    """Take a user out of an organization."""
    membership = await find_membership(session, org.id, user_id)
    if membership is None:
        raise NotFound("This user is not a member", code="member_not_found")
    await session.delete(membership)
    await session.flush()
    for hook in _member_removed_hooks:
        await hook(session, org.id, user_id)
