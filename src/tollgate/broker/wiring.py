"""What the broker does when an organization changes, for ``create_app`` and the CLI to wire."""

from __future__ import annotations

from tollgate.broker import audit, leases
from tollgate.identity.organizations import OrganizationHooks


def organization_hooks() -> OrganizationHooks:
    """Audit every organization change; revoke leases when a member leaves or stops being a
    manager."""
    return OrganizationHooks(
        changed=(audit.record_organization_change,),
        member_removed=(leases.revoke_on_member_removed,),
        role_lowered=(leases.revoke_on_role_lowered,),
    )
