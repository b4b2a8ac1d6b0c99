"""Which server processes are alive: each one heartbeats its id through the cache.

Work a process leaves half-done (a tool call charged but not settled) is recovered by the
others only once its heartbeat has lapsed, never while it may still finish the work itself.
"""

from __future__ import annotations

import secrets

from tollgate.core.cache import Cache

HEARTBEAT_TTL_SECONDS = 30.0
"""A process whose heartbeat is this old is taken for dead."""

HEARTBEAT_INTERVAL_SECONDS = 10.0
"""How often a process renews its heartbeat: well inside the TTL."""


def new_instance_id() -> str:
    """A random id for this process."""
    return secrets.token_hex(8)


async def heartbeat(cache: Cache, instance_id: str) -> None:
    """Say that ``instance_id`` is alive for another TTL."""
    await cache.set(f"instance:{instance_id}", "1", HEARTBEAT_TTL_SECONDS)


async def is_alive(cache: Cache, instance_id: str) -> bool:
    """Whether ``instance_id`` heartbeated within the TTL."""
    return await cache.get(f"instance:{instance_id}") is not None
