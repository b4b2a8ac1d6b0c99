"""Who is calling: bearer parsing, the current user, permission checks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from tollgate.core.database import commit
from tollgate.core.deps import SessionDep, SettingsDep
from tollgate.core.errors import Forbidden, Unauthorized
from tollgate.identity.jwt import decode_access_token
from tollgate.identity.models import User
from tollgate.identity.permissions import permissions_for
from tollgate.identity.service import user_for_claims


def bearer_token(request: Request) -> str:
    """The token of ``Authorization: Bearer ...``, with seed 000's 401 texts."""
    header = request.headers.get("Authorization", "")
    if not header:
        raise Unauthorized("Missing Authorization header", code="missing_authorization")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Invalid Authorization header format", code="invalid_authorization")
    return token.strip()


BearerToken = Annotated[str, Depends(bearer_token)]


async def current_user(token: BearerToken, session: SessionDep, settings: SettingsDep) -> User:
    """The active user named by the JWT in the request.

    Authentication is its own unit of work: it commits (a user seen for the first time is
    created) so the request holds no transaction while its route decides what to do; on
    SQLite an open transaction would make any other writer in the process wait.
    """
    claims = decode_access_token(
        token,
        secret=settings.jwt_secret_key,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    user = await user_for_claims(session, claims)
    await commit(session)
    return user


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
