"""Who may do what: the one role-to-permission map."""

from __future__ import annotations

from typing import Final

USER_PERMISSIONS: Final = frozenset(
    {
        "mcp.account",
        "mcp.use",
        "integrations.manage",
        "tokens.manage",
        "organizations.create",
        "llm.invoke",
        "llm.read",
    }
)
"""What every signed-in user may do for themselves."""

ADMIN_PERMISSIONS: Final = USER_PERMISSIONS | frozenset(
    {
        "admin.users.read",
        "admin.organizations.manage",
        "admin.accounts.manage",
        "analytics.read",
        "analytics.write",
        "audit.read",
        "upstreams.manage",
        "servers.manage",
        "oauth.manage",
        "services.manage",
        "llm.manage",
    }
)
"""Operators of the gateway."""

SUPERUSER_PERMISSIONS: Final = ADMIN_PERMISSIONS | frozenset({"admin.users.write"})
"""Superusers may also create, change and delete users."""

ROLE_PERMISSIONS: Final[dict[str, frozenset[str]]] = {
    "user": USER_PERMISSIONS,
    "admin": ADMIN_PERMISSIONS,
}


def permissions_for(role: str, is_superuser: bool) -> frozenset[str]:
    """Every permission a user with ``role`` (and the superuser flag) holds."""
    if is_superuser:
        return SUPERUSER_PERMISSIONS
    return ROLE_PERMISSIONS.get(role, frozenset())
