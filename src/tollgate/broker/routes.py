"""Seed 001's ``/api/mcp/me`` and lease routes, access tokens, services and the audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Response

from tollgate.broker import audit, catalogue, leases, tokens
from tollgate.broker.deps import Leaser, Reader
from tollgate.broker.models import Lease
from tollgate.broker.schemas import (
    AuditEntry,
    AuditPage,
    LeaseCreate,
    LeaseCreated,
    LeaseDetails,
    LeaseRenewed,
    LeaseRevoke,
    LeaseRevoked,
    MeResponse,
    OrganizationRef,
    OrgCredentials,
    ServiceCreate,
    ServiceOut,
    TokenCreate,
    TokenCreated,
    TokenOut,
)
from tollgate.core.clock import UTCMomentOrNaive
from tollgate.core.database import database_now
from tollgate.core.deps import (
    ClientAddress,
    PageLimit,
    PageOffset,
    PathId,
    RuntimeDep,
    SessionDep,
)
from tollgate.core.metrics import LEASES
from tollgate.identity import organizations as orgs
from tollgate.identity.deps import CurrentUser, require
from tollgate.identity.models import User

mcp_router = APIRouter(prefix="/api/mcp", tags=["credential broker"])
tokens_router = APIRouter(prefix="/api/v1/tokens", tags=["access tokens"])
services_router = APIRouter(prefix="/api/v1/services", tags=["services"])
audit_router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

LeaseId = Annotated[str, Path(pattern=r"^lse_[A-Za-z0-9_-]{1,64}$")]
TokenManager = Annotated[User, Depends(require("tokens.manage"))]
ServicesAdmin = Annotated[User, Depends(require("services.manage"))]
AuditReader = Annotated[User, Depends(require("audit.read"))]


@mcp_router.get("/me", response_model=MeResponse)
async def me(caller: Reader, session: SessionDep) -> MeResponse:
    """The token's user, organizations and leasable services. Access token or JWT."""
    memberships = await orgs.organizations_of(session, caller.user.id)
    audit.record(
        session, "mcp_auth_success", caller.actor, target_type="user", target_id=caller.user.id
    )
    return MeResponse(
        user_id=caller.user.id,
        email=caller.user.email,
        name=caller.user.display_name or caller.user.username,
        organizations=[OrganizationRef(id=o.id, name=o.name, role=r) for o, r in memberships],
        available_services=await leases.available_services(session, caller.user),
    )


@mcp_router.post("/credentials/lease", response_model=LeaseCreated, status_code=201)
async def create_lease(
    body: LeaseCreate, caller: Leaser, session: SessionDep, runtime: RuntimeDep
) -> LeaseCreated:
    """Lease credentials for services. Access token with ``lease`` scope, or JWT."""
    issued = await leases.create(
        session,
        runtime.keyring,
        runtime.settings,
        caller.user,
        leases.LeaseRequest(
            services=list(dict.fromkeys(body.services)),
            ttl=body.ttl,
            server_id=body.server_id,
            allow_partial=body.allow_partial,
        ),
        token_id=caller.token.id if caller.token else None,
        actor=caller.actor,
    )
    lease = issued.lease
    LEASES.labels("created").inc()
    return LeaseCreated(
        lease_id=lease.id,
        credentials=issued.credentials,
        expires_at=lease.expires_at,
        renewable=leases.is_renewable(lease, await database_now(session)),
        credential_scope=lease.credential_scope,
        included_org_credentials=[
            OrgCredentials.model_validate(o) for o in lease.included_org_credentials
        ],
        missing_services=issued.missing,
    )


@mcp_router.get("/credentials/lease/{lease_id}", response_model=LeaseDetails)
async def get_lease(lease_id: LeaseId, caller: Reader, session: SessionDep) -> LeaseDetails:
    """A lease's details, never its credentials. Its owner or an admin; 404 for others."""
    lease = await leases.visible_lease(session, lease_id, caller.user)
    return _details(lease, await database_now(session))


@mcp_router.post("/credentials/lease/{lease_id}/renew", response_model=LeaseRenewed)
async def renew_lease(lease_id: LeaseId, caller: Leaser, session: SessionDep) -> LeaseRenewed:
    """Extend a lease by its original TTL. Its owner, with ``lease`` scope."""
    lease = await leases.renew(session, lease_id, caller.user, caller.actor)
    LEASES.labels("renewed").inc()
    return LeaseRenewed(
        lease_id=lease.id,
        expires_at=lease.expires_at,
        renewal_count=lease.renewal_count,
        last_renewed_at=lease.last_renewed_at,
    )


@mcp_router.delete("/credentials/lease/{lease_id}", response_model=LeaseRevoked)
async def revoke_lease(
    lease_id: LeaseId,
    caller: Leaser,
    session: SessionDep,
    body: Annotated[LeaseRevoke | None, Body()] = None,
) -> LeaseRevoked:
    """Revoke a lease (again: the first ``revoked_at``). Its owner or an admin."""
    lease = await leases.revoke(
        session, lease_id, caller.user, caller.actor, body.reason if body else None
    )
    assert lease.revoked_at is not None
    LEASES.labels("revoked").inc()
    return LeaseRevoked(
        message="Lease revoked successfully", lease_id=lease.id, revoked_at=lease.revoked_at
    )


def _details(lease: Lease, now: datetime) -> LeaseDetails:
    return LeaseDetails(
        lease_id=lease.id,
        status=leases.status_of(lease, now).value,
        services=lease.services,
        expires_at=lease.expires_at,
        renewable=leases.is_renewable(lease, now),
        renewal_count=lease.renewal_count,
        credential_scope=lease.credential_scope,
        max_renewals=lease.max_renewals,
        server_id=lease.server_id,
        created_at=lease.created_at,
        revoked_at=lease.revoked_at,
    )


@tokens_router.post("", response_model=TokenCreated, status_code=201)
async def create_token(
    body: TokenCreate, user: TokenManager, session: SessionDep, address: ClientAddress
) -> TokenCreated:
    """Issue an access token for an MCP server; its value is in this answer only. JWT."""
    issued = await tokens.issue(
        session,
        user,
        name=body.name,
        scopes=body.scopes,
        expires_at=tokens.expiry_after(body.expires_in_days),
        actor=audit.Actor(user_id=user.id, client_address=address),
    )
    await session.refresh(issued.token)
    return TokenCreated(**TokenOut.model_validate(issued.token).model_dump(), token=issued.full)


@tokens_router.get("", response_model=list[TokenOut])
async def list_tokens(user: TokenManager, session: SessionDep) -> list[TokenOut]:
    """The caller's tokens (prefix, created, expires, last used). JWT."""
    return [TokenOut.model_validate(t) for t in await tokens.list_for_user(session, user.id)]


@tokens_router.delete("/{token_id}", response_model=TokenOut)
async def revoke_token(
    token_id: PathId, user: TokenManager, session: SessionDep, address: ClientAddress
) -> TokenOut:
    """Revoke one of the caller's tokens. JWT."""
    actor = audit.Actor(user_id=user.id, client_address=address)
    return TokenOut.model_validate(await tokens.revoke(session, token_id, user, actor))


@services_router.get("", response_model=list[ServiceOut])
async def list_services(_: CurrentUser, session: SessionDep) -> list[ServiceOut]:
    """The service catalogue. Any signed-in user."""
    return [
        ServiceOut.model_validate(s.model_dump()) for s in await catalogue.list_services(session)
    ]


@services_router.post("", response_model=ServiceOut, status_code=201)
async def add_service(body: ServiceCreate, _: ServicesAdmin, session: SessionDep) -> ServiceOut:
    """Add a service definition. Needs ``services.manage``."""
    service = await catalogue.add_service(
        session, slug=body.slug, name=body.name, description=body.description, fields=body.fields
    )
    return ServiceOut.model_validate(service.model_dump())


@services_router.delete("/{slug}", status_code=204)
async def delete_service(
    slug: Annotated[str, Path(max_length=64)], _: ServicesAdmin, session: SessionDep
) -> Response:
    """Remove an added service definition. Needs ``services.manage``."""
    await catalogue.delete_service(session, slug)
    return Response(status_code=204)


@audit_router.get("", response_model=AuditPage)
async def search_audit(
    _: AuditReader,
    session: SessionDep,
    action: Annotated[str | None, Query(max_length=64)] = None,
    actor_user_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    target_type: Annotated[str | None, Query(max_length=32)] = None,
    target_id: Annotated[str | None, Query(max_length=64)] = None,
    since: UTCMomentOrNaive | None = None,
    until: UTCMomentOrNaive | None = None,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
) -> AuditPage:
    """The audit trail, newest first, filtered. Needs ``audit.read``."""
    where = audit.AuditFilter(
        action=action,
        actor_user_id=actor_user_id,
        target_type=target_type,
        target_id=target_id,
        since=since,
        until=until,
    )
    total, rows = await audit.search(session, where, limit=limit, offset=offset)
    return AuditPage(total=total, entries=[AuditEntry.model_validate(r) for r in rows])
