"""What ``create_app`` and the CLI wire the same way: the columns stored encrypted."""

from __future__ import annotations

from tollgate.broker.models import Integration, Lease
from tollgate.core.encrypted import EncryptedColumn, encrypted_column
from tollgate.gateway.models import Upstream


def encrypted_columns() -> tuple[EncryptedColumn, ...]:
    """Every column holding envelopes, in every part: ``tollgate rotate-keys`` re-encrypts
    exactly these (a test checks that no ``Envelope`` column of the models is missing)."""
    return (
        encrypted_column(Upstream, "headers_envelope"),
        encrypted_column(Upstream, "env_envelope"),
        encrypted_column(Integration, "credentials_envelope"),
        encrypted_column(Lease, "credentials_envelope"),
    )
