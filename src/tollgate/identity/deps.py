"""Who is calling: bearer parsing, the current user, permission checks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tollgate.core.deps import SessionDep, SettingsDep
from tollgate.core.errors import Forbidden, Unauthorized
from tollgate.core.state import component
from tollgate.identity.credentials import Credentials, user_for_jwt
from tollgate.identity.models import User
from tollgate.identity.permissions import permissions_for

BEARER_SCHEME = HTTPBearer(
    auto_error=False,
    description="A user's JWT (from /api/v1/auth/login), an account key (mcp_...) or an "
    "access token (mcpt_...), as each route says.",
)
"""Declares the bearer scheme in the OpenAPI document (the docs' Authorize button); the
header itself is read below, with seed 000's refusals."""


def bearer_token(request: Request) -> str:
    """The token of ``Authorization: Bearer ...``, with seed 000's 401 texts."""
    header = request.headers.get("Authorization", "")
    if not header:
        raise Unauthorized("Missing Authorization header", code="missing_authorization")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Invalid Authorization header format", code="invalid_authorization")
    return token.strip()


def declared_bearer_token(
    request: Request,
    _declared: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER_SCHEME)],
) -> str:
    """:func:`bearer_token`, as a dependency the OpenAPI document shows as bearer auth."""
    return bearer_token(request)


BearerToken = Annotated[str, Depends(declared_bearer_token)]


CredentialsDep = Annotated[Credentials, Depends(component(Credentials))]
"""The process's resolver of bearer values (built by ``create_app``)."""


async def current_user(token: BearerToken, session: SessionDep, settings: SettingsDep) -> User:
    """The active user named by the JWT in the request (see :func:`user_for_jwt`)."""
    return await user_for_jwt(token, session, settings)


CurrentUser = Annotated[User, Depends(current_user)]


def require(permission: str) -> Callable[..., Awaitable[User]]:
    """A dependency that passes the current user on only if they hold ``permission``."""

    async def _check(user: CurrentUser) -> User:
        if permission not in permissions_for(user.role, user.is_superuser):
            raise Forbidden(f"This needs the '{permission}' permission", code="permission_denied")
        return user

    _check.__name__ = f"require_{permission.replace('.', '_')}"
    return _check


AdminReader = Annotated[User, Depends(require("admin.users.read"))]
Superuser = Annotated[User, Depends(require("admin.users.write"))]
OrgAdmin = Annotated[User, Depends(require("admin.organizations.manage"))]
