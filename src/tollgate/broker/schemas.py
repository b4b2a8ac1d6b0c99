"""Bodies of the broker routes (seed 001's shapes for ``/api/mcp/me`` and the leases)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from tollgate.broker.catalogue import ServiceField
from tollgate.core.database import MAX_ID
from tollgate.identity.models import Organization

ServiceSlug = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z][a-z0-9_-]{0,63}$")
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]
UserId = Annotated[int, Field(ge=1, le=MAX_ID)]

Scope = Literal["lease", "read", "ingest"]

MAX_SERVICES_PER_LEASE = 32
"""More services than any server needs at once; bounds the work of one request."""


class OrganizationRef(BaseModel):
    """An organization the caller belongs to."""

    id: int
    name: str
    role: str


class MeResponse(BaseModel):
    """Who the token belongs to and which services it can lease."""

    user_id: int
    email: str
    name: str | None
    organizations: list[OrganizationRef]
    available_services: list[str]


class LeaseCreate(BaseModel):
    """A lease request."""

    model_config = ConfigDict(extra="forbid")

    services: list[ServiceSlug] = Field(min_length=1, max_length=MAX_SERVICES_PER_LEASE)
    ttl: int | None = Field(default=None, ge=1, le=10_000_000)
    server_id: Annotated[str, StringConstraints(max_length=200)] | None = None
    allow_partial: bool = False


class OrgCredentials(BaseModel):
    """Which organization gave which services."""

    organization_id: int
    services: list[str]


class LeaseCreated(BaseModel):
    """A new lease, with its credentials: the only answer that carries secrets."""

    lease_id: str
    credentials: dict[str, dict[str, Any]]
    expires_at: datetime
    renewable: bool
    credential_scope: Literal["personal", "organization", "mixed"]
    included_org_credentials: list[OrgCredentials]
    missing_services: list[str] = Field(default_factory=list)


class LeaseRenewed(BaseModel):
    """A renewed lease."""

    lease_id: str
    expires_at: datetime
    renewal_count: int
    last_renewed_at: datetime | None


class LeaseDetails(BaseModel):
    """A lease without its credentials."""

    lease_id: str
    status: Literal["active", "expired", "revoked"]
    services: list[str]
    expires_at: datetime
    renewable: bool
    renewal_count: int
    credential_scope: str
    max_renewals: int
    server_id: str | None
    created_at: datetime
    revoked_at: datetime | None


class LeaseRevoke(BaseModel):
    """Why a lease is revoked (optional)."""

    model_config = ConfigDict(extra="forbid")

    reason: Reason | None = None


class LeaseRevoked(BaseModel):
    """A revoked lease."""

    message: str
    lease_id: str
    revoked_at: datetime


class IntegrationCreate(BaseModel):
    """A new integration."""

    model_config = ConfigDict(extra="forbid")

    service: ServiceSlug
    name: Name | None = None
    credentials: dict[str, Any]
    status: Literal["ACTIVE", "DISABLED", "ERROR"] = "ACTIVE"


class OrgIntegrationCreate(IntegrationCreate):
    """A new organization integration, with who may use it."""

    shared_with: Literal["all_members", "admins_only", "users"] = "all_members"
    shared_user_ids: list[UserId] = Field(default_factory=list, max_length=1000)


class IntegrationUpdate(BaseModel):
    """Changes to an integration; credential values given are merged into the stored ones."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    credentials: dict[str, Any] | None = None
    status: Literal["ACTIVE", "DISABLED", "ERROR"] | None = None
    shared_with: Literal["all_members", "admins_only", "users"] | None = None
    shared_user_ids: list[UserId] | None = Field(default=None, max_length=1000)


class IntegrationOut(BaseModel):
    """An integration as any response shows it: secret fields masked."""

    id: int
    service: str
    name: str
    status: str
    scope: Literal["personal", "organization"]
    organization_id: int | None
    credentials: dict[str, Any]
    shared_with: str | None
    shared_user_ids: list[int]
    created_at: datetime
    updated_at: datetime


def _default_scopes() -> list[Scope]:
    return ["lease"]


class TokenCreate(BaseModel):
    """A new access token for an MCP server."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    scopes: list[Scope] = Field(default_factory=_default_scopes, min_length=1)
    expires_in_days: int | None = Field(default=90, ge=1, le=3650)


class TokenOut(BaseModel):
    """A token without its value."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    token_prefix: str
    scopes: list[str]
    is_active: bool
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    """A new token: ``token`` is shown this once."""

    token: str


class ServiceOut(BaseModel):
    """A service of the catalogue."""

    slug: str
    name: str
    description: str | None
    fields: list[ServiceField]
    builtin: bool


class ServiceCreate(BaseModel):
    """A service added by an admin."""

    model_config = ConfigDict(extra="forbid")

    slug: ServiceSlug
    name: Name
    description: Reason | None = None
    fields: list[ServiceField] = Field(min_length=1, max_length=50)


class AuditEntry(BaseModel):
    """One audit row."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    action: str
    actor_user_id: int | None
    actor_token_prefix: str | None
    target_type: str | None
    target_id: str | None
    client_address: str | None
    details: dict[str, Any]
    created_at: datetime


class AuditPage(BaseModel):
    """A page of the audit trail, newest first."""

    total: int
    entries: list[AuditEntry]


class OrganizationCreateBody(BaseModel):
    """A new organization; the creator becomes its owner."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    slug: Annotated[
        str,
        StringConstraints(
            strip_whitespace=True, min_length=2, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$"
        ),
    ]


class MyOrganization(BaseModel):
    """An organization and the caller's role in it."""

    id: int
    name: str
    slug: str
    role: str | None
    created_at: datetime

    @classmethod
    def of(cls, org: Organization, role: str | None) -> MyOrganization:
        """An organization with the caller's role in it (None for an admin who is no member)."""
        return cls(id=org.id, name=org.name, slug=org.slug, role=role, created_at=org.created_at)


class MemberRole(BaseModel):
    """A member's new role."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["owner", "admin", "member"]


class MemberInvite(BaseModel):
    """A user joining an organization, named by id or email."""

    model_config = ConfigDict(extra="forbid")

    user_id: UserId | None = None
    email: Annotated[str, StringConstraints(max_length=320)] | None = None
    role: Literal["owner", "admin", "member"] = "member"
