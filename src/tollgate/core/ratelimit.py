"""Fixed-window rate limits shared by every process through the cache, off the hot path.

Each process counts hits in memory and adds them to the shared counter in the background (one
cache round trip per key and sync, not per hit), learning the other processes' hits from the
count it gets back. So a hit costs no round trip; across processes a limit may be passed by
what the others counted since their last sync (at most :data:`SYNC_INTERVAL_SECONDS` of
their traffic).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass

from tollgate.core.cache import Cache

logger = logging.getLogger(__name__)

SYNC_INTERVAL_SECONDS = 0.1
"""How often a process adds its hits to the shared counters."""


@dataclass
class _Window:
    shared: int = 0
    """The shared count as last seen (this process's synced hits included)."""
    pending: int = 0
    """This process's hits not yet added to the shared count."""


class RateLimiter:
    """Counts hits per key in fixed windows, against one limit shared by every process."""

    def __init__(self, cache: Cache) -> None:
        self._cache = cache
        self._windows: dict[tuple[str, int, int], _Window] = {}
        self._sync: asyncio.Task[None] | None = None

    def hit(self, key: str, limit: int, window_seconds: int) -> int | None:
        """Count one hit for ``key``: None when allowed, else the seconds until the current
        window ends (when the client may try again)."""
        now = time.time()
        index = int(now // window_seconds)
        window = self._windows.setdefault((key, window_seconds, index), _Window())
        if window.shared + window.pending >= limit:
            return max(math.ceil((index + 1) * window_seconds - now), 1)
        window.pending += 1
        self._schedule_sync()
        return None

    def _schedule_sync(self) -> None:
        if self._sync is None or self._sync.done():
            self._sync = asyncio.get_running_loop().create_task(self._sync_soon())

    async def _sync_soon(self) -> None:
        while True:
            await asyncio.sleep(SYNC_INTERVAL_SECONDS)
            await self.sync()
            if not any(w.pending for w in self._windows.values()):
                return

    async def sync(self) -> None:
        """Add every pending hit to the shared counters and drop past windows."""
        now = time.time()
        for (key, seconds, index), window in list(self._windows.items()):
            if (index + 1) * seconds < now:
                del self._windows[(key, seconds, index)]
                continue
            if window.pending == 0:
                continue
            pending, window.pending = window.pending, 0
            try:
                window.shared = await self._cache.incr(
                    f"ratelimit:{key}:{index}", pending, ttl=seconds * 2
                )
            except Exception:
                window.pending += pending
                logger.warning("could not share rate-limit counts; retrying")

    async def close(self) -> None:
        """Share what is pending and stop."""
        if self._sync is not None:
            self._sync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync
        with contextlib.suppress(Exception):
            await self.sync()
