"""What one process knows about each upstream, in one record per upstream.

The hub, the connection pool and the catalogue share one :class:`Upstreams` registry: each
keeps its part of the record (connection spec and auth; sessions; listing, policy and
availability) instead of a dictionary of its own keyed by the upstream's name.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import anyio

from tollgate.gateway.catalogue import UpstreamListing, UpstreamPolicy
from tollgate.gateway.connections import ConnectionSpec, UpstreamConnection
from tollgate.gateway.models import AuthMode


@dataclass(frozen=True)
class UpstreamAuth:
    """How one upstream's calls are authenticated."""

    mode: str
    service: str | None
    header: str | None


NO_AUTH = UpstreamAuth(AuthMode.NONE, None, None)
"""Calls carry no credential of the caller's (Tollgate's own headers only, if any)."""


@dataclass(eq=False)
class UpstreamRecord:
    """One upstream as this process serves it."""

    name: str
    spec: ConnectionSpec | None = None
    """How to connect; None until the upstream is applied (a stray callback may come first)."""
    auth: UpstreamAuth = NO_AUTH
    builtin: bool = False
    """Served in process (not stored, never removed by a sync)."""
    policy: UpstreamPolicy | None = None
    listing: UpstreamListing | None = None
    listing_digest: str | None = None
    """Digest of the last listing saved, so an unchanged one is not written again."""
    available: bool = False
    """Whether its offer is shown (its session is up, or assumed up from the stored state)."""
    connection: UpstreamConnection | None = None
    """The shared session."""
    credential_connections: dict[str, UpstreamConnection] = field(default_factory=dict)
    """Sessions carrying one user's credential, by the credential's fingerprint."""
    first_contact: anyio.Event | None = None
    """Set once a newly started shared session connected or failed."""

    def connections(self) -> Iterator[UpstreamConnection]:
        """Every open session of this upstream."""
        if self.connection is not None:
            yield self.connection
        yield from self.credential_connections.values()


class Upstreams(dict[str, UpstreamRecord]):
    """The records of one process, by upstream name."""

    def record(self, name: str) -> UpstreamRecord:
        """The record of ``name``, created empty when there is none yet."""
        found = self.get(name)
        if found is None:
            found = self[name] = UpstreamRecord(name)
        return found
