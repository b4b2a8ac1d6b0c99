"""Entries of the shared cache kept in the process's own memory, for values read on every
request (an account key's identity): no cache round trip on a hit.

A change anywhere is announced on one pub/sub channel, and every process drops its copy at
once. Copies also expire on their own after :data:`NEAR_TTL_SECONDS`, and all of them are
dropped whenever the process (re)subscribes: an announcement missed while the subscription
was down cannot keep a stale copy alive for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from tollgate.core.cache import Cache

logger = logging.getLogger(__name__)

NEAR_TTL_SECONDS = 5.0
"""A copy lives this long at most: the bound on staleness if an announcement is lost."""

NEAR_MAX_ENTRIES = 100_000
"""Past this many copies, all are dropped (they are refilled from the shared cache)."""

CHANGES_CHANNEL = "near-cache-changes"

RESUBSCRIBE_DELAY_SECONDS = 1.0
"""Wait after a broken subscription before subscribing again."""


class NearCache:
    """Process-local copies of shared-cache values, dropped everywhere on change."""

    def __init__(self, cache: Cache, ttl: float = NEAR_TTL_SECONDS) -> None:
        self.cache = cache
        self.ttl = ttl
        self._copies: dict[str, tuple[str, float]] = {}
        self._listening: asyncio.Task[None] | None = None
        self._subscribed = False
        self._generation = 0
        """Counts the changes heard: a value read before a change is not kept after it."""

    def get(self, key: str) -> str | None:
        """The local copy of ``key``, if fresh (only while changes are being heard)."""
        found = self._copies.get(key)
        if found is None:
            return None
        value, expires = found
        if expires < time.monotonic() or not self._subscribed:
            self._copies.pop(key, None)
            return None
        return value

    def generation(self) -> int:
        """Take this before reading the shared cache, and give it to :meth:`put`."""
        return self._generation

    def put(self, key: str, value: str, read_at: int) -> None:
        """Keep a copy of a value read from the shared cache at generation ``read_at``
        (not if any change was heard since: the value may be the one that changed)."""
        if not self._subscribed or read_at != self._generation:
            return
        if len(self._copies) >= NEAR_MAX_ENTRIES:
            self._copies.clear()
        self._copies[key] = (value, time.monotonic() + self.ttl)

    async def changed(self, key: str) -> None:
        """``key`` changed: drop the copy here, and tell every other process to."""
        self._generation += 1
        self._copies.pop(key, None)
        await self.cache.publish(CHANGES_CHANNEL, key)

    def start(self) -> None:
        """Start hearing changes (copies are kept only while they are heard)."""
        if self._listening is None:
            self._listening = asyncio.create_task(self._listen())

    async def stop(self) -> None:
        """Stop hearing changes and drop every copy."""
        if self._listening is not None:
            self._listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listening
            self._listening = None
        self._subscribed = False
        self._copies.clear()

    async def _listen(self) -> None:
        while True:
            try:
                async with self.cache.subscribe(CHANGES_CHANNEL) as changes:
                    self._copies.clear()  # whatever changed while nobody listened
                    self._subscribed = True
                    async for key in changes:
                        self._generation += 1
                        self._copies.pop(key, None)
            except Exception:
                logger.warning("near cache: change announcements unavailable; retrying")
            finally:
                self._subscribed = False
                self._generation += 1
                self._copies.clear()
            await asyncio.sleep(RESUBSCRIBE_DELAY_SECONDS)
