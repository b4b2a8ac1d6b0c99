"""The near cache: copies of shared-cache entries in one process, dropped in every process
when the entry changes (on memory, and across two Redis clients as two processes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest

from tests.conftest import require_redis
from tests.waiting import eventually
from tollgate.core.cache import Cache, MemoryCache, RedisCache
from tollgate.core.nearcache import NearCache


async def listening(near: NearCache) -> NearCache:
    """``near`` once it hears changes (copies are kept only then)."""
    near.start()

    async def subscribed() -> bool:
        near.put("probe", "1", near.generation())
        return near.get("probe") == "1"

    await eventually(subscribed, "the near cache hears changes")
    return near


@pytest.fixture
async def memory_near() -> AsyncIterator[NearCache]:
    near = NearCache(MemoryCache(prefix=f"t:{uuid4().hex}:"))
    try:
        yield await listening(near)
    finally:
        await near.stop()


async def test_a_copy_is_served_until_its_entry_changes(memory_near: NearCache) -> None:
    memory_near.put("key", "value", memory_near.generation())
    assert memory_near.get("key") == "value"
    await memory_near.changed("key")
    assert memory_near.get("key") is None


async def test_a_value_read_before_a_change_is_not_kept(memory_near: NearCache) -> None:
    read_at = memory_near.generation()
    await memory_near.changed("key")  # announced while the old value was on its way
    memory_near.put("key", "old value", read_at)
    assert memory_near.get("key") is None


async def test_nothing_is_kept_while_changes_are_not_heard() -> None:
    near = NearCache(MemoryCache(prefix=f"t:{uuid4().hex}:"))
    near.put("key", "value", near.generation())
    assert near.get("key") is None
    await listening(near)
    near.put("key", "value", near.generation())
    await near.stop()
    assert near.get("key") is None


async def test_a_change_in_one_process_drops_the_copy_in_another() -> None:
    url, prefix = require_redis(), f"t:{uuid4().hex}:"
    caches: list[Cache] = [RedisCache(url, prefix), RedisCache(url, prefix)]
    here, there = NearCache(caches[0]), NearCache(caches[1])
    try:
        await listening(here)
        await listening(there)
        there.put("key", "value", there.generation())
        await here.changed("key")

        async def dropped() -> bool:
            return there.get("key") is None

        await eventually(dropped, "the other process drops its copy")
    finally:
        await asyncio.gather(here.stop(), there.stop())
        for cache in caches:
            await cache.close()
