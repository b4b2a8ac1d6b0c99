"""Request and response bodies of the identity routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from tollgate.core.database import MAX_ID
from tollgate.identity.models import Invitation, Membership, Organization, User

Username = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=3, max_length=64, pattern=r"^[A-Za-z0-9._-]+$"
    ),
]
Password = Annotated[str, StringConstraints(min_length=8, max_length=256)]
DisplayName = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=200, pattern=r"^[^\x00]*$")
]
Slug = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=2, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$"
    ),
]


class TokenResponse(BaseModel):
    """A signed-in user's access token."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class UserOut(BaseModel):
    """A user as admins and the user themselves see them (never the password hash)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    email: str
    display_name: str | None
    role: str
    is_superuser: bool
    is_active: bool
    created_at: datetime
    last_login_at: datetime | None


class UserCreate(BaseModel):
    """A new user, created by a superuser."""

    model_config = ConfigDict(extra="forbid")

    username: Username
    email: EmailStr
    password: Password
    display_name: DisplayName | None = None
    role: Literal["user", "admin"] = "user"
    is_superuser: bool = False


class UserUpdate(BaseModel):
    """Changes to a user; omitted fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    email: EmailStr | None = None
    display_name: DisplayName | None = None
    password: Password | None = None
    role: Literal["user", "admin"] | None = None
    is_active: bool | None = None
    is_superuser: bool | None = None


class OrganizationCreate(BaseModel):
    """A new organization; ``owner_id`` becomes its owner."""

    model_config = ConfigDict(extra="forbid")

    name: DisplayName = Field(min_length=1)
    slug: Slug
    owner_id: int | None = Field(default=None, ge=1, le=MAX_ID)


class OrganizationOut(BaseModel):
    """An organization."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    slug: str
    created_at: datetime


class MemberAdd(BaseModel):
    """A user joining an organization."""

    model_config = ConfigDict(extra="forbid")

    user_id: int = Field(ge=1, le=MAX_ID)
    role: Literal["owner", "admin", "member"] = "member"


class MemberOut(BaseModel):
    """A member of an organization."""

    user_id: int
    username: str
    email: str
    role: str
    joined_at: datetime

    @classmethod
    def of(cls, membership: Membership, user: User) -> MemberOut:
        """A membership and its user as one member."""
        return cls(
            user_id=user.id,
            username=user.username,
            email=user.email,
            role=membership.role,
            joined_at=membership.created_at,
        )


class InvitationOut(BaseModel):
    """An invitation to join an organization.

    The invitee appears only as the inviter named them (``user_id`` or ``email``): nothing
    is looked up, so an invitation never tells whether that user exists.
    """

    id: int
    organization_id: int
    organization_name: str
    user_id: int | None
    email: str | None
    role: str
    status: str
    invited_by_user_id: int | None
    created_at: datetime
    responded_at: datetime | None

    @classmethod
    def of(cls, invitation: Invitation, org: Organization) -> InvitationOut:
        """An invitation and its organization as one answer."""
        return cls(
            id=invitation.id,
            organization_id=org.id,
            organization_name=org.name,
            user_id=invitation.invitee_user_id,
            email=invitation.invitee_email,
            role=invitation.role,
            status=invitation.status,
            invited_by_user_id=invitation.invited_by_user_id,
            created_at=invitation.created_at,
            responded_at=invitation.responded_at,
        )
