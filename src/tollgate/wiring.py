"""What ``create_app`` and the CLI wire the same way: the columns stored encrypted, and what
other parts do when identity changes a user or an organization."""

from __future__ import annotations

from tollgate.accounts.service import keys_follow_their_user
from tollgate.broker.models import Integration, Lease
from tollgate.broker.wiring import organization_hooks
from tollgate.chat.models import LlmProvider
from tollgate.core.encrypted import EncryptedColumn, encrypted_column
from tollgate.gateway.models import Upstream
from tollgate.identity import organizations
from tollgate.identity.service import install_access_hooks


def encrypted_columns() -> tuple[EncryptedColumn, ...]:
    """Every column holding envelopes, in every part: ``tollgate rotate-keys`` re-encrypts
    exactly these (a test checks that no ``Envelope`` column of the models is missing)."""
    return (
        encrypted_column(Upstream, "headers_envelope"),
        encrypted_column(Upstream, "env_envelope"),
        encrypted_column(LlmProvider, "api_key_envelope"),
        encrypted_column(Integration, "credentials_envelope"),
        encrypted_column(Lease, "credentials_envelope"),
    )


def install_identity_hooks() -> None:
    """Wire the parts into identity's changes: a user switched off or deleted loses their
    account keys at once; organization changes are audited and revoke leases."""
    install_access_hooks([keys_follow_their_user])
    organizations.install_hooks(organization_hooks())
