"""The pool of upstream connections: one shared session per upstream, plus one per user
credential for upstreams that call with the user's own credentials (closed when idle)."""

from __future__ import annotations

import logging
from dataclasses import replace
from types import TracebackType

import anyio
from anyio.abc import TaskGroup

from tollgate.gateway.connections import (
    ConnectionSpec,
    ListingCallback,
    StateCallback,
    UpdatedCallback,
    UpstreamConnection,
    WantedCallback,
)
from tollgate.gateway.upstreams import Upstreams

logger = logging.getLogger(__name__)

IDLE_CREDENTIAL_SESSION_SECONDS = 300.0
"""A per-user session unused this long is closed; the next call opens a new one."""

REAP_INTERVAL_SECONDS = 30.0
"""How often idle per-user sessions are looked for."""


class ConnectionPool:
    """Owns every upstream connection's task; reuse, never a session per call."""

    def __init__(
        self,
        upstreams: Upstreams,
        on_listing: ListingCallback,
        on_state: StateCallback,
        own_gateway_id: str | None = None,
        on_resource_updated: UpdatedCallback | None = None,
        resource_subscriptions: WantedCallback | None = None,
    ) -> None:
        self._upstreams = upstreams
        self._on_resource_updated = on_resource_updated
        self._resource_subscriptions = resource_subscriptions
        self._on_listing = on_listing
        self._own_gateway_id = own_gateway_id
        self._on_state = on_state
        self._group: TaskGroup | None = None

    async def __aenter__(self) -> ConnectionPool:
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        self._group.start_soon(self._reap_idle_sessions)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for record in self._upstreams.values():
            for connection in record.connections():
                connection.stop()
        assert self._group is not None
        self._group.cancel_scope.cancel()
        await self._group.__aexit__(exc_type, exc, tb)
        self._group = None

    def _start(self, connection: UpstreamConnection) -> None:
        assert self._group is not None, "the pool is not running"
        self._group.start_soon(connection.run)

    def shared(self, name: str) -> UpstreamConnection | None:
        """The shared session of an upstream, if it has one."""
        record = self._upstreams.get(name)
        return record.connection if record is not None else None

    def ensure(self, spec: ConnectionSpec) -> UpstreamConnection:
        """The shared session for ``spec``, (re)started when the spec is new or changed."""
        current = self.shared(spec.name)
        if current is not None and current.spec == spec:
            return current
        self.remove(spec.name)
        connection = UpstreamConnection(
            spec,
            on_listing=self._on_listing,
            on_state=self._on_state,
            own_gateway_id=self._own_gateway_id,
            on_resource_updated=self._on_resource_updated,
            resource_subscriptions=self._resource_subscriptions,
        )
        self._upstreams.record(spec.name).connection = connection
        self._start(connection)
        return connection

    def remove(self, name: str) -> None:
        """Close every session of an upstream."""
        record = self._upstreams.get(name)
        if record is None:
            return
        for connection in record.connections():
            connection.stop()
        record.connection = None
        record.credential_connections.clear()

    def for_credential(self, spec: ConnectionSpec, fingerprint: str) -> UpstreamConnection:
        """The session that carries one user's credential to an upstream."""
        sessions = self._upstreams.record(spec.name).credential_connections
        current = sessions.get(fingerprint)
        if current is not None and current.spec == spec:
            return current
        if current is not None:
            current.stop()
        connection = UpstreamConnection(spec, own_gateway_id=self._own_gateway_id)
        sessions[fingerprint] = connection
        self._start(connection)
        return connection

    def handshake_twin(self, spec: ConnectionSpec) -> UpstreamConnection:
        """A handshake-era session to the upstream ``spec`` reaches (closed when idle like
        the per-user ones): for callers an upstream may push requests to mid-call."""
        twin = replace(spec, mode="legacy")
        return self.for_credential(twin, f"handshake:{hash(twin)}")

    def names(self) -> list[str]:
        """Upstreams with a shared session."""
        return [name for name, record in self._upstreams.items() if record.connection]

    async def _reap_idle_sessions(self) -> None:
        while True:
            await anyio.sleep(REAP_INTERVAL_SECONDS)
            cutoff = anyio.current_time() - IDLE_CREDENTIAL_SESSION_SECONDS
            for record in list(self._upstreams.values()):
                sessions = record.credential_connections
                for fingerprint, connection in list(sessions.items()):
                    if connection.last_used < cutoff:
                        logger.info("closing idle credential session to %s", record.name)
                        sessions.pop(fingerprint).stop()
