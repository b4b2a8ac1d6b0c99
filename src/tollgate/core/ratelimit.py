"""Fixed-window rate limits through the cache, so every process counts against one limit."""

from __future__ import annotations

import time

from tollgate.core.cache import Cache


async def allow(cache: Cache, key: str, limit: int, window_seconds: int) -> bool:
    """Count one hit for ``key``; False once ``limit`` hits fell in the current window."""
    window = int(time.time() // window_seconds)
    count = await cache.incr(f"ratelimit:{key}:{window}", ttl=window_seconds * 2)
    return count <= limit
