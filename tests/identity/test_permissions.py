"""The role-to-permission map and the ``require()`` dependency over HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from tests.conftest import auth, make_user
from tollgate.core.runtime import Runtime
from tollgate.identity.deps import require
from tollgate.identity.models import Role, User
from tollgate.identity.permissions import (
    ADMIN_PERMISSIONS,
    SUPERUSER_PERMISSIONS,
    USER_PERMISSIONS,
    permissions_for,
)

ADMIN_ONLY = ["admin.users.read", "admin.organizations.manage", "analytics.read", "llm.manage"]


async def token_user(runtime: Runtime, **fields: Any) -> User:
    """A stored user without a password, who signs in by token only (no argon2 work)."""
    return await make_user(runtime, password="", **fields)


def test_plain_user_holds_no_admin_permission() -> None:
    held = permissions_for("user", False)
    assert held == USER_PERMISSIONS
    assert {"mcp.account", "mcp.use", "llm.invoke", "llm.read"} <= held
    assert not {p for p in held if p.startswith("admin.")}
    for permission in [*ADMIN_ONLY, "admin.users.write"]:
        assert permission not in held


def test_admin_may_use_the_llm_and_read_users_but_not_write_them() -> None:
    held = permissions_for("admin", False)
    assert held == ADMIN_PERMISSIONS
    assert {"llm.invoke", "llm.read", *ADMIN_ONLY} <= held
    assert held > USER_PERMISSIONS
    assert "admin.users.write" not in held


@pytest.mark.parametrize("role", ["admin", "user"])
def test_superuser_holds_every_permission_whatever_the_role(role: str) -> None:
    held = permissions_for(role, True)
    assert held == SUPERUSER_PERMISSIONS
    assert "admin.users.write" in held
    assert held > ADMIN_PERMISSIONS


def test_unknown_role_holds_nothing() -> None:
    assert permissions_for("root", False) == frozenset()
    assert permissions_for("", False) == frozenset()


def guarded(app: FastAPI, permission: str) -> str:
    """Mount a route on the running app that only ``require(permission)`` guards."""
    path = f"/test-only/{permission}"

    # A default, not Annotated: the annotations are strings here and could not see `permission`.
    async def handler(user: User = Depends(require(permission))) -> dict[str, Any]:
        return {"user_id": user.id}

    app.add_api_route(path, handler, methods=["GET"])
    app.router.routes.insert(0, app.router.routes.pop())  # ahead of the catch-all /mcp mount
    return path


@pytest.mark.parametrize(
    ("role", "is_superuser", "permission", "allowed"),
    [
        (Role.USER, False, "llm.invoke", True),
        (Role.USER, False, "admin.users.read", False),
        (Role.ADMIN, False, "admin.users.read", True),
        (Role.ADMIN, False, "llm.invoke", True),
        (Role.ADMIN, False, "admin.users.write", False),
        (Role.ADMIN, True, "admin.users.write", True),
        (Role.ADMIN, True, "no.such.permission", False),
    ],
)
async def test_require_lets_through_only_holders_of_the_permission(
    app: FastAPI,
    client: httpx.AsyncClient,
    runtime: Runtime,
    role: str,
    is_superuser: bool,
    permission: str,
    allowed: bool,
) -> None:
    path = guarded(app, permission)
    user = await token_user(runtime, role=role, is_superuser=is_superuser)
    response = await client.get(path, headers=auth(runtime, user))
    if allowed:
        assert response.status_code == 200, response.text
        assert response.json() == {"user_id": user.id}
    else:
        assert response.status_code == 403, response.text
        detail = response.json()["detail"]
        assert detail["code"] == "permission_denied"
        assert detail["message"] == f"This needs the '{permission}' permission"


async def test_require_asks_for_a_token_before_checking_permissions(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    path = guarded(app, "llm.invoke")
    response = await client.get(path)
    assert response.status_code == 401
    assert response.json()["detail"]["message"] == "Missing Authorization header"


async def test_require_follows_a_role_change_without_a_new_token(
    app: FastAPI, client: httpx.AsyncClient, runtime: Runtime
) -> None:
    path = guarded(app, "admin.users.read")
    root = await token_user(runtime, username="root", is_superuser=True)
    user = await token_user(runtime, username="rising")
    headers = auth(runtime, user)
    assert (await client.get(path, headers=headers)).status_code == 403
    promoted = await client.put(
        f"/api/v1/admin/users/{user.id}", json={"role": "admin"}, headers=auth(runtime, root)
    )
    assert promoted.status_code == 200, promoted.text
    assert (await client.get(path, headers=headers)).status_code == 200
