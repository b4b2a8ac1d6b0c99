"""Sign-in, admin users and organizations (admin API)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from fastapi.security import OAuth2PasswordRequestForm

from tollgate.core.deps import (
    CacheDep,
    ClientAddress,
    PageLimit,
    PageOffset,
    PathId,
    RuntimeDep,
    SessionDep,
    SettingsDep,
)
from tollgate.core.errors import Conflict
from tollgate.identity import organizations as orgs
from tollgate.identity import service
from tollgate.identity.deps import AdminReader, CurrentUser, OrgAdmin, Superuser
from tollgate.identity.models import User
from tollgate.identity.schemas import (
    MemberAdd,
    MemberOut,
    OrganizationCreate,
    OrganizationOut,
    TokenResponse,
    UserCreate,
    UserOut,
    UserUpdate,
)

auth_router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
users_router = APIRouter(prefix="/api/v1/admin/users", tags=["admin users"])
orgs_router = APIRouter(prefix="/api/v1/admin/organizations", tags=["admin organizations"])


@auth_router.post("/login", response_model=TokenResponse)
async def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    settings: SettingsDep,
    cache: CacheDep,
    address: ClientAddress,
) -> TokenResponse:
    """Exchange a username (or email) and password for a JWT. Public."""
    throttle = service.LoginThrottle(cache, settings)
    user = await service.authenticate(session, throttle, form.username, form.password, address)
    return TokenResponse(
        access_token=service.issue_access_token(settings, user),
        expires_in=settings.access_token_expire_minutes * 60,
    )


@users_router.get("/me", response_model=UserOut)
async def read_me(user: CurrentUser) -> UserOut:
    """The signed-in user. Any signed-in user."""
    return UserOut.model_validate(user)


@users_router.get("", response_model=list[UserOut])
async def list_users(
    _: AdminReader,
    session: SessionDep,
    role: Annotated[str | None, Query(pattern="^(user|admin)$")] = None,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
) -> list[UserOut]:
    """Users, optionally of one role. Needs ``admin.users.read``."""
    users = await service.list_users(session, role=role, limit=limit, offset=offset)
    return [UserOut.model_validate(u) for u in users]


@users_router.post("", response_model=UserOut, status_code=201)
async def create_user(body: UserCreate, _: Superuser, session: SessionDep) -> UserOut:
    """Create a user (a plain user unless ``role`` says otherwise). Needs a superuser."""
    user = await service.create_user(
        session,
        username=body.username,
        email=body.email,
        password=body.password,
        role=body.role,
        is_superuser=body.is_superuser,
        display_name=body.display_name,
    )
    return UserOut.model_validate(user)


@users_router.put("/{user_id}", response_model=UserOut)
async def update_user(
    user_id: PathId, body: UserUpdate, caller: Superuser, session: SessionDep, runtime: RuntimeDep
) -> UserOut:
    """Change a user. Needs a superuser; nobody can demote or deactivate themselves."""
    user = await service.get_user(session, user_id)
    service.refuse_self_demotion(
        caller, user, role=body.role, is_active=body.is_active, is_superuser=body.is_superuser
    )
    changes = body.model_dump(exclude_unset=True)
    user = await service.update_user(session, user, runtime=runtime, **changes)
    return UserOut.model_validate(user)


@users_router.delete("/{user_id}", status_code=204)
async def delete_user(
    user_id: PathId, caller: Superuser, session: SessionDep, runtime: RuntimeDep
) -> Response:
    """Delete a user. Needs a superuser; nobody can delete themselves."""
    user = await service.get_user(session, user_id)
    if user.id == caller.id:
        raise Conflict("You cannot delete yourself", code="cannot_delete_self")
    await service.delete_user(session, user, runtime)
    return Response(status_code=204)


def _administrator(admin: User, address: str | None = None) -> orgs.Caller:
    return orgs.Caller(user=admin, client_address=address, administrator=True)


@orgs_router.get("", response_model=list[OrganizationOut])
async def list_organizations(
    _: OrgAdmin, session: SessionDep, limit: PageLimit = 100, offset: PageOffset = 0
) -> list[OrganizationOut]:
    """Organizations. Needs ``admin.organizations.manage``."""
    found = await orgs.list_organizations(session, limit=limit, offset=offset)
    return [OrganizationOut.model_validate(o) for o in found]


@orgs_router.post("", response_model=OrganizationOut, status_code=201)
async def create_organization(
    body: OrganizationCreate, admin: OrgAdmin, session: SessionDep, address: ClientAddress
) -> OrganizationOut:
    """Create an organization, optionally with an owner; audited. Needs
    ``admin.organizations.manage``."""
    owner = await service.get_user(session, body.owner_id) if body.owner_id else None
    by = _administrator(admin, address).actor
    org = await orgs.create_organization(
        session, name=body.name, slug=body.slug, owner=owner, by=by
    )
    return OrganizationOut.model_validate(org)


@orgs_router.get("/{org_id}", response_model=OrganizationOut)
async def read_organization(org_id: PathId, _: OrgAdmin, session: SessionDep) -> OrganizationOut:
    """One organization. Needs ``admin.organizations.manage``."""
    return OrganizationOut.model_validate(await orgs.get_organization(session, org_id))


@orgs_router.delete("/{org_id}", status_code=204)
async def delete_organization(
    org_id: PathId, admin: OrgAdmin, session: SessionDep, address: ClientAddress
) -> Response:
    """Delete an organization (each member leaves it); audited. Needs
    ``admin.organizations.manage``."""
    await orgs.delete_organization(session, org_id, _administrator(admin, address))
    return Response(status_code=204)


@orgs_router.get("/{org_id}/members", response_model=list[MemberOut])
async def list_members(org_id: PathId, admin: OrgAdmin, session: SessionDep) -> list[MemberOut]:
    """An organization's members. Needs ``admin.organizations.manage``."""
    members = await orgs.list_members(session, org_id, _administrator(admin))
    return [MemberOut.of(m, u) for m, u in members]


@orgs_router.post("/{org_id}/members", response_model=MemberOut, status_code=201)
async def add_member(
    org_id: PathId, body: MemberAdd, admin: OrgAdmin, session: SessionDep, address: ClientAddress
) -> MemberOut:
    """Add a member directly (no invitation), or change a member's role, under the rules
    of the members' API (the last owner stays one; a lowered manager loses leases);
    audited. Needs ``admin.organizations.manage``."""
    membership, user = await orgs.add_member(
        session, org_id, body.user_id, body.role, _administrator(admin, address)
    )
    return MemberOut.of(membership, user)


@orgs_router.delete("/{org_id}/members/{user_id}", status_code=204)
async def remove_member(
    org_id: PathId, user_id: PathId, admin: OrgAdmin, session: SessionDep, address: ClientAddress
) -> Response:
    """Remove a member (the last owner stays); their leases carrying the organization's
    credentials are revoked; audited. Needs ``admin.organizations.manage``."""
    await orgs.remove_member(session, org_id, user_id, _administrator(admin, address))
    return Response(status_code=204)
