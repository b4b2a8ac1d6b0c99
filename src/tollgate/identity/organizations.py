"""Organizations and their members: the one service both the members' API and the admin API use.

Every rule lives here: who may manage an organization, who may grant which role, that an
organization with owners keeps one, and what happens when someone's access shrinks. A
user becomes a member only by accepting an invitation (see :mod:`.invitations`), or when
an administrator adds them with :func:`add_member` (seed-demo uses :func:`enrol`). A
pending invitee is no member: membership rows are what credential resolution reads.

Other parts act on changes through :class:`OrganizationHooks` (the broker writes the audit
row and revokes leases). They are wired explicitly by ``create_app`` and the CLI with
:func:`install_hooks`, never at import time; a change that needs them refuses to run
unwired rather than skip the audit or the revocation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tollgate.core.errors import Conflict, Forbidden, NotFound
from tollgate.identity.models import Membership, Organization, OrgRole, Role, User
from tollgate.identity.service import get_user

MANAGER_ROLES = frozenset({OrgRole.OWNER, OrgRole.ADMIN})
"""Organization roles that manage its integrations and members."""


@dataclass(frozen=True)
class OrgActor:
    """Who changes an organization, and from where (for the audit trail)."""

    user_id: int | None = None
    client_address: str | None = None


@dataclass(frozen=True)
class Caller:
    """A user asking for an organization change, from where, and through which door."""

    user: User
    client_address: str | None = None
    administrator: bool = False
    """Authorized by ``admin.organizations.manage`` (the admin API): acts on any
    organization as a gateway admin does, without being a member of it."""

    @property
    def actor(self) -> OrgActor:
        """The caller as the audit trail names them."""
        return OrgActor(user_id=self.user.id, client_address=self.client_address)


@dataclass(frozen=True)
class OrgChange:
    """A change to an organization or its membership, announced to the change hooks."""

    action: str
    organization_id: int
    actor: OrgActor
    details: dict[str, Any] = field(default_factory=dict)


OrgChangeHook = Callable[[AsyncSession, OrgChange], None]
"""Called in the transaction that makes the change (the broker writes the audit row)."""

MemberRemovedHook = Callable[[AsyncSession, int, int], Awaitable[object]]
"""Called with (session, organization id, user id) in the transaction that removes a member."""

RoleLoweredHook = Callable[[AsyncSession, int, int, OrgActor], Awaitable[object]]
"""Called with (session, organization id, user id, actor) when an owner or admin becomes a
plain member, in the transaction that lowers the role."""


@dataclass(frozen=True)
class OrganizationHooks:
    """What other parts do in the transaction of an organization change."""

    changed: tuple[OrgChangeHook, ...] = ()
    member_removed: tuple[MemberRemovedHook, ...] = ()
    role_lowered: tuple[RoleLoweredHook, ...] = ()


_hooks: OrganizationHooks | None = None


def install_hooks(hooks: OrganizationHooks) -> None:
    """Wire what other parts do on organization changes (``create_app`` and the CLI call it;
    installing again replaces what was there)."""
    global _hooks
    _hooks = hooks


def installed_hooks() -> OrganizationHooks:
    """The wired hooks; RuntimeError when nothing wired them, so no change goes unaudited."""
    if _hooks is None:
        raise RuntimeError("organization hooks are not installed: call install_hooks() first")
    return _hooks


def announce(session: AsyncSession, change: OrgChange) -> None:
    """Tell the change hooks (the audit trail) about ``change``, in its transaction."""
    for hook in installed_hooks().changed:
        hook(session, change)


async def create_organization(
    session: AsyncSession,
    *,
    name: str,
    slug: str,
    owner: User | None,
    by: OrgActor | None = None,
) -> Organization:
    """Create an organization, with ``owner`` as its first member; with ``by``, audited."""
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
    if by is not None:
        announce(session, OrgChange("organization_created", org.id, by, {"slug": org.slug}))
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


async def find_by_slug(session: AsyncSession, slug: str) -> Organization | None:
    """The organization with ``slug``, if any."""
    query = select(Organization).where(Organization.slug == slug)
    return (await session.execute(query)).scalar_one_or_none()


async def list_organizations(
    session: AsyncSession, *, limit: int = 100, offset: int = 0
) -> Sequence[Organization]:
    """Organizations, oldest first."""
    query = select(Organization).order_by(Organization.id).limit(limit).offset(offset)
    return (await session.execute(query)).scalars().all()


async def organizations_of(session: AsyncSession, user_id: int) -> list[tuple[Organization, str]]:
    """The organizations the user belongs to, oldest first, each with the user's role."""
    rows = await session.execute(
        select(Organization, Membership.role)
        .join(Membership, Membership.organization_id == Organization.id)
        .where(Membership.user_id == user_id)
        .order_by(Organization.id)
    )
    return [(org, role) for org, role in rows.all()]


async def find_membership(session: AsyncSession, org_id: int, user_id: int) -> Membership | None:
    """The user's membership of the organization, if any."""
    query = select(Membership).where(
        Membership.organization_id == org_id, Membership.user_id == user_id
    )
    return (await session.execute(query)).scalar_one_or_none()


async def require_member(
    session: AsyncSession, org_id: int, user: User, *, manage: bool = False
) -> Membership | None:
    """The user's membership; 404 for outsiders, 403 for members who may not manage.

    Gateway admins pass without a membership.
    """
    membership = await find_membership(session, org_id, user.id)
    if user.role == Role.ADMIN and membership is None:
        return None
    if membership is None:
        raise NotFound("Organization not found", code="organization_not_found")
    if manage and membership.role not in MANAGER_ROLES:
        raise Forbidden("Only owners and admins manage this organization", code="not_org_admin")
    return membership


async def authority(
    session: AsyncSession, org_id: int, caller: Caller, *, manage: bool = False
) -> Membership | None:
    """The caller's membership as :func:`require_member` checks it; None when the caller
    acts as an administrator (who may do what the organization's owners may)."""
    if caller.administrator:
        return None
    return await require_member(session, org_id, caller.user, manage=manage)


def check_role_grant(manager: Membership | None, role: str) -> None:
    """Forbidden unless ``manager`` may grant (or touch someone holding) ``role``: only
    owners make or change owners; administrators (``manager`` None) may do anything."""
    if role == OrgRole.OWNER and manager is not None and manager.role != OrgRole.OWNER:
        raise Forbidden("Only owners can make owners", code="not_org_owner")


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


async def organization_for(
    session: AsyncSession, org_id: int, caller: Caller
) -> tuple[Organization, Membership | None]:
    """An organization the caller may see, with the caller's membership (None for admins)."""
    org = await get_organization(session, org_id)
    return org, await authority(session, org_id, caller)


async def _members(session: AsyncSession, org_id: int) -> list[tuple[Membership, User]]:
    query = (
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.organization_id == org_id)
        .order_by(Membership.id)
    )
    return [(m, u) for m, u in (await session.execute(query)).all()]


async def list_members(
    session: AsyncSession, org_id: int, caller: Caller
) -> list[tuple[Membership, User]]:
    """The organization's members with their users. Members and administrators."""
    await organization_for(session, org_id, caller)
    return await _members(session, org_id)


async def enrol(session: AsyncSession, org: Organization, user_id: int, role: str) -> Membership:
    """Make a user a member without asking them or auditing it: for seed-demo only."""
    user = await get_user(session, user_id)
    membership = Membership(organization_id=org.id, user_id=user.id, role=role)
    session.add(membership)
    await session.flush()
    return membership


async def add_member(
    session: AsyncSession, org_id: int, user_id: int, role: str, caller: Caller
) -> tuple[Membership, User]:
    """Add a user to an organization without asking them, or change a member's role, as
    :func:`change_member_role` does. Administrators only: members invite instead."""
    if not caller.administrator:
        raise Forbidden("Only administrators add members directly", code="permission_denied")
    org = await get_organization(session, org_id, lock=True)
    user = await get_user(session, user_id)
    if await find_membership(session, org.id, user_id) is not None:
        return await change_member_role(session, org_id, user_id, role, caller)
    membership = Membership(organization_id=org.id, user_id=user.id, role=role)
    session.add(membership)
    await session.flush()
    details = {"user_id": user_id, "role": role}
    announce(session, OrgChange("member_added", org.id, caller.actor, details))
    return membership, user


def _no_member() -> NotFound:
    return NotFound("This user is not a member", code="member_not_found")


async def change_member_role(
    session: AsyncSession, org_id: int, member_id: int, role: str, caller: Caller
) -> tuple[Membership, User]:
    """Change a member's role; audited. Owners and admins (and administrators); only owners
    touch owners; the last owner stays one. An owner or admin lowered to a plain member
    loses what only managers may use (the role-lowered hooks revoke their leases)."""
    await get_organization(session, org_id, lock=True)
    manager = await authority(session, org_id, caller, manage=True)
    current = await find_membership(session, org_id, member_id)
    if current is None:
        raise _no_member()
    check_role_grant(manager, role)
    check_role_grant(manager, current.role)
    if current.role == OrgRole.OWNER and role != OrgRole.OWNER:
        await ensure_an_owner_remains(session, org_id, member_id)
    previous = current.role
    current.role = role
    await session.flush()
    details = {"user_id": member_id, "from": previous, "to": role}
    announce(session, OrgChange("member_role_changed", org_id, caller.actor, details))
    if previous in MANAGER_ROLES and role not in MANAGER_ROLES:
        for hook in installed_hooks().role_lowered:
            await hook(session, org_id, member_id, caller.actor)
    return current, await get_user(session, member_id)


async def _take_out(session: AsyncSession, membership: Membership, actor: OrgActor) -> None:
    """End a membership: the member-removed hooks run, and the change is announced."""
    org_id, user_id = membership.organization_id, membership.user_id
    hooks = installed_hooks()
    await session.delete(membership)
    await session.flush()
    for hook in hooks.member_removed:
        await hook(session, org_id, user_id)
    announce(session, OrgChange("member_removed", org_id, actor, {"user_id": user_id}))


async def remove_member(session: AsyncSession, org_id: int, member_id: int, caller: Caller) -> None:
    """Take a member out of an organization (or leave it); audited, and their leases
    carrying its credentials are revoked (by the member-removed hooks). Owners and admins
    (and administrators), or the member themselves; the last owner stays."""
    await get_organization(session, org_id, lock=True)
    leaving = member_id == caller.user.id
    manager = await authority(session, org_id, caller, manage=not leaving)
    current = await find_membership(session, org_id, member_id)
    if current is None:
        raise _no_member()
    if not leaving:
        check_role_grant(manager, current.role)
    if current.role == OrgRole.OWNER:
        await ensure_an_owner_remains(session, org_id, member_id)
    await _take_out(session, current, caller.actor)


async def delete_organization(session: AsyncSession, org_id: int, caller: Caller) -> None:
    """Remove an organization: each member leaves it (hooks, audit and all), then it goes.
    Administrators only."""
    if not caller.administrator:
        raise Forbidden("Only administrators delete organizations", code="permission_denied")
    org = await get_organization(session, org_id, lock=True)
    for membership, _ in await _members(session, org.id):
        await _take_out(session, membership, caller.actor)
    announce(session, OrgChange("organization_deleted", org.id, caller.actor, {"slug": org.slug}))
    await session.delete(org)
    await session.flush()
