"""Behaviour of the shared cache; every parametrized test runs on memory and on Redis."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import uuid4

import pytest

from tollgate.core.cache import (
    SUBSCRIBER_QUEUE_LIMIT,
    Cache,
    LockNotAcquired,
    MemoryCache,
    RedisCache,
    make_cache,
)

SHORT_TTL = 0.05
"""Long enough to read the value back, short enough to keep the suite fast."""

PAST_SHORT_TTL = 0.12
"""Sleep that outlasts SHORT_TTL with margin for a loaded machine."""

EVENT_TIMEOUT = 2.0
"""Upper bound when waiting on something that should happen almost at once."""


def _redis_url() -> str:
    url = os.environ.get("TOLLGATE_TEST_REDIS_URL")
    if url:
        return url
    if os.environ.get("TOLLGATE_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail("TOLLGATE_TEST_REDIS_URL is unset but TOLLGATE_TEST_REQUIRE_SERVICES=1")
    pytest.skip("TOLLGATE_TEST_REDIS_URL is unset")


def _prefix() -> str:
    return f"test:{uuid4().hex}:"


@asynccontextmanager
async def _redis_cache(prefix: str) -> AsyncIterator[RedisCache]:
    cache = RedisCache(_redis_url(), prefix)
    try:
        yield cache
    finally:
        keys = [key async for key in cache.client.scan_iter(match=prefix + "*")]
        if keys:
            await cache.client.delete(*keys)
        await cache.close()


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    prefix = _prefix()
    if request.param == "memory":
        memory = MemoryCache(prefix)
        yield memory
        await memory.close()
        return
    async with _redis_cache(prefix) as redis_cache:
        yield redis_cache


@pytest.fixture
async def redis_cache() -> AsyncIterator[RedisCache]:
    async with _redis_cache(_prefix()) as cache:
        yield cache


async def _next_message(messages: AsyncIterator[str]) -> str:
    async with asyncio.timeout(EVENT_TIMEOUT):
        return await anext(messages)


async def test_missing_key_reads_as_none(cache: Cache) -> None:
    assert await cache.get("missing") is None


async def test_stored_value_can_be_read_back(cache: Cache) -> None:
    await cache.set("k", '{"a": 1}')

    assert await cache.get("k") == '{"a": 1}'


async def test_set_overwrites_existing_value(cache: Cache) -> None:
    await cache.set("k", "old")
    await cache.set("k", "new")

    assert await cache.get("k") == "new"


async def test_value_expires_after_ttl(cache: Cache) -> None:
    await cache.set("k", "v", ttl=SHORT_TTL)
    assert await cache.get("k") == "v"

    await asyncio.sleep(PAST_SHORT_TTL)

    assert await cache.get("k") is None


async def test_set_without_ttl_removes_previous_expiry(cache: Cache) -> None:
    await cache.set("k", "short", ttl=SHORT_TTL)
    await cache.set("k", "forever")

    await asyncio.sleep(PAST_SHORT_TTL)

    assert await cache.get("k") == "forever"


async def test_non_positive_ttl_is_rejected(cache: Cache) -> None:
    with pytest.raises(ValueError, match="ttl"):
        await cache.set("k", "v", ttl=0)

    assert await cache.get("k") is None


async def test_add_stores_value_when_key_is_absent(cache: Cache) -> None:
    assert await cache.add("k", "v") is True

    assert await cache.get("k") == "v"


async def test_add_does_not_overwrite_existing_value(cache: Cache) -> None:
    await cache.set("k", "first")

    assert await cache.add("k", "second") is False
    assert await cache.get("k") == "first"


async def test_add_succeeds_once_previous_value_expired(cache: Cache) -> None:
    await cache.add("k", "first", ttl=SHORT_TTL)

    await asyncio.sleep(PAST_SHORT_TTL)

    assert await cache.add("k", "second") is True
    assert await cache.get("k") == "second"


async def test_delete_removes_every_given_key_and_ignores_missing_ones(cache: Cache) -> None:
    await cache.set("a", "1")
    await cache.set("b", "2")
    await cache.set("c", "3")

    await cache.delete("a", "b", "never-set")
    await cache.delete()

    assert await cache.get("a") is None
    assert await cache.get("b") is None
    assert await cache.get("c") == "3"


async def test_incr_creates_missing_key_with_amount(cache: Cache) -> None:
    assert await cache.incr("n", 5) == 5

    assert await cache.get("n") == "5"


async def test_incr_adds_to_existing_value(cache: Cache) -> None:
    await cache.set("n", "10")

    assert await cache.incr("n") == 11
    assert await cache.incr("n", -3) == 8


async def test_incr_is_atomic_under_concurrency(cache: Cache) -> None:
    results = await asyncio.gather(*(cache.incr("n", ttl=60) for _ in range(200)))

    assert sorted(results) == list(range(1, 201))
    assert await cache.get("n") == "200"


async def test_incr_ttl_is_set_only_when_key_is_created(cache: Cache) -> None:
    assert await cache.incr("window", ttl=SHORT_TTL) == 1
    assert await cache.incr("window", ttl=60) == 2

    await asyncio.sleep(PAST_SHORT_TTL)

    assert await cache.get("window") is None


async def test_incr_with_ttl_does_not_add_expiry_to_existing_key(cache: Cache) -> None:
    await cache.set("n", "5")

    assert await cache.incr("n", ttl=SHORT_TTL) == 6
    await asyncio.sleep(PAST_SHORT_TTL)

    assert await cache.get("n") == "6"


async def test_lock_excludes_another_owner_until_released(cache: Cache) -> None:
    first = cache.lock("job", ttl=5)
    second = cache.lock("job", ttl=5)

    assert await first.acquire(blocking=False) is True
    assert await second.acquire(blocking=False) is False

    assert await first.release() is True
    assert await second.acquire(blocking=False) is True


async def test_lock_owner_defaults_to_a_distinct_random_token(cache: Cache) -> None:
    first = cache.lock("job", ttl=5)
    second = cache.lock("job", ttl=5)

    assert len(first.owner) == 32
    assert first.owner != second.owner


async def test_lock_release_by_other_owner_is_refused(cache: Cache) -> None:
    holder = cache.lock("job", ttl=5)
    intruder = cache.lock("job", ttl=5)
    await holder.acquire(blocking=False)

    assert await intruder.release() is False
    assert await cache.lock("job", ttl=5).acquire(blocking=False) is False


async def test_lock_can_be_released_by_another_handle_with_the_same_owner(cache: Cache) -> None:
    await cache.lock("job", ttl=5, owner="worker-1").acquire(blocking=False)

    assert await cache.lock("job", ttl=5, owner="worker-1").release() is True
    assert await cache.lock("job", ttl=5).acquire(blocking=False) is True


async def test_releasing_a_lock_not_held_returns_false(cache: Cache) -> None:
    assert await cache.lock("job", ttl=5).release() is False


async def test_expired_lock_can_be_taken_by_another_owner(cache: Cache) -> None:
    crashed = cache.lock("job", ttl=SHORT_TTL)
    await crashed.acquire(blocking=False)

    await asyncio.sleep(PAST_SHORT_TTL)

    assert await cache.lock("job", ttl=5).acquire(blocking=False) is True


async def test_stale_owner_cannot_release_lock_retaken_after_expiry(cache: Cache) -> None:
    stale = cache.lock("job", ttl=SHORT_TTL)
    await stale.acquire(blocking=False)
    await asyncio.sleep(PAST_SHORT_TTL)
    current = cache.lock("job", ttl=5)
    await current.acquire(blocking=False)

    assert await stale.release() is False
    assert await cache.lock("job", ttl=5).acquire(blocking=False) is False


async def test_extended_lock_outlives_its_original_ttl(cache: Cache) -> None:
    holder = cache.lock("job", ttl=SHORT_TTL)
    await holder.acquire(blocking=False)

    assert await holder.extend(5) is True
    await asyncio.sleep(PAST_SHORT_TTL)

    assert await cache.lock("job", ttl=5).acquire(blocking=False) is False


async def test_lock_extend_by_other_owner_is_refused(cache: Cache) -> None:
    holder = cache.lock("job", ttl=SHORT_TTL)
    await holder.acquire(blocking=False)

    assert await cache.lock("job", ttl=5).extend(5) is False
    await asyncio.sleep(PAST_SHORT_TTL)

    assert await cache.lock("job", ttl=5).acquire(blocking=False) is True


async def test_blocking_acquire_times_out(cache: Cache) -> None:
    await cache.lock("job", ttl=5).acquire(blocking=False)
    waiter = cache.lock("job", ttl=5)

    started = time.monotonic()
    acquired = await waiter.acquire(timeout=0.1)
    elapsed = time.monotonic() - started

    assert acquired is False
    assert 0.1 <= elapsed < 1.0


async def test_blocking_acquire_succeeds_when_holder_lock_expires(cache: Cache) -> None:
    await cache.lock("job", ttl=0.1).acquire(blocking=False)
    waiter = cache.lock("job", ttl=5)

    async with asyncio.timeout(EVENT_TIMEOUT):
        assert await waiter.acquire(timeout=EVENT_TIMEOUT) is True


async def test_lock_context_manager_holds_lock_and_releases_on_exit(cache: Cache) -> None:
    async with cache.lock("job", ttl=5):
        assert await cache.lock("job", ttl=5).acquire(blocking=False) is False

    assert await cache.lock("job", ttl=5).acquire(blocking=False) is True


async def test_lock_context_manager_releases_when_body_raises(cache: Cache) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        async with cache.lock("job", ttl=5):
            raise RuntimeError("boom")

    assert await cache.lock("job", ttl=5).acquire(blocking=False) is True


async def test_lock_context_manager_raises_when_lock_not_acquired_in_time(cache: Cache) -> None:
    holder = cache.lock("job", ttl=5)
    await holder.acquire(blocking=False)

    with pytest.raises(LockNotAcquired):
        async with cache.lock("job", ttl=5, timeout=0.05):
            pytest.fail("body must not run without the lock")

    assert await holder.release() is True


async def test_published_message_reaches_every_subscriber(cache: Cache) -> None:
    async with cache.subscribe("events") as first, cache.subscribe("events") as second:
        await cache.publish("events", "hello")

        assert await _next_message(first) == "hello"
        assert await _next_message(second) == "hello"


async def test_messages_arrive_in_publish_order(cache: Cache) -> None:
    async with cache.subscribe("events") as messages:
        for n in range(5):
            await cache.publish("events", str(n))

        received = []
        async with asyncio.timeout(EVENT_TIMEOUT):
            async for message in messages:
                received.append(message)
                if len(received) == 5:
                    break

    assert received == ["0", "1", "2", "3", "4"]


async def test_messages_published_together_arrive_each_and_in_order(cache: Cache) -> None:
    async with cache.subscribe("events") as messages:
        await cache.publish_many("events", [str(n) for n in range(5)])
        await cache.publish_many("events", [])
        await cache.publish("events", "after")

        received = []
        async with asyncio.timeout(EVENT_TIMEOUT):
            async for message in messages:
                received.append(message)
                if len(received) == 6:
                    break

    assert received == ["0", "1", "2", "3", "4", "after"]


async def test_subscriber_that_never_reads_keeps_only_the_newest_messages() -> None:
    memory = MemoryCache(f"test:{uuid4().hex}:")
    published = SUBSCRIBER_QUEUE_LIMIT + 500
    async with memory.subscribe("live") as messages:
        for n in range(published):
            await memory.publish("live", str(n))

        received = [await _next_message(messages) for _ in range(SUBSCRIBER_QUEUE_LIMIT)]
        await memory.publish("live", "after")

        assert await _next_message(messages) == "after"
    assert received == [str(n) for n in range(500, published)]


async def test_subscriber_receives_only_its_own_channel(cache: Cache) -> None:
    async with cache.subscribe("mine") as messages:
        await cache.publish("other", "not for me")
        await cache.publish("mine", "for me")

        assert await _next_message(messages) == "for me"


async def test_message_published_before_subscribe_is_not_received(cache: Cache) -> None:
    await cache.publish("events", "too early")

    async with cache.subscribe("events") as messages:
        await cache.publish("events", "on time")

        assert await _next_message(messages) == "on time"


async def test_ping_reports_reachable_backend(cache: Cache) -> None:
    assert await cache.ping() is True


async def test_ping_reports_unreachable_redis_as_down() -> None:
    unreachable = RedisCache("redis://127.0.0.1:1/0", _prefix())
    try:
        assert await unreachable.ping() is False
    finally:
        await unreachable.close()


async def test_make_cache_without_url_uses_memory() -> None:
    for url in (None, ""):
        cache = make_cache(url, prefix="p:")
        assert isinstance(cache, MemoryCache)
        assert cache.prefix == "p:"
        await cache.close()


async def test_make_cache_with_url_uses_redis() -> None:
    cache = make_cache("redis://127.0.0.1:1/0", prefix="p:")
    try:
        assert isinstance(cache, RedisCache)
        assert cache.prefix == "p:"
    finally:
        await cache.close()


async def test_redis_keys_and_channels_carry_the_prefix(redis_cache: RedisCache) -> None:
    await redis_cache.set("k", "v")
    await redis_cache.lock("job", ttl=5).acquire(blocking=False)

    assert await redis_cache.client.get(redis_cache.prefix + "k") == "v"
    assert await redis_cache.client.exists(redis_cache.prefix + "lock:job") == 1
    async with redis_cache.subscribe("events"):
        counts = await redis_cache.client.pubsub_numsub(redis_cache.prefix + "events")
    assert counts == [(redis_cache.prefix + "events", 1)]


async def test_leaving_subscription_unsubscribes_from_redis(redis_cache: RedisCache) -> None:
    channel = redis_cache.prefix + "events"
    async with redis_cache.subscribe("events"):
        pass

    assert await redis_cache.client.pubsub_numsub(channel) == [(channel, 0)]


async def test_two_cache_instances_with_the_same_redis_share_state(
    redis_cache: RedisCache,
) -> None:
    other = RedisCache(_redis_url(), redis_cache.prefix)
    try:
        await redis_cache.set("k", "v")
        assert await other.get("k") == "v"

        await redis_cache.incr("n")
        assert await other.incr("n") == 2

        await redis_cache.lock("job", ttl=5).acquire(blocking=False)
        assert await other.lock("job", ttl=5).acquire(blocking=False) is False

        async with other.subscribe("events") as messages:
            await redis_cache.publish("events", "across")
            assert await _next_message(messages) == "across"
    finally:
        await other.close()


async def test_caches_with_different_prefixes_do_not_see_each_other(
    redis_cache: RedisCache,
) -> None:
    async with _redis_cache(_prefix()) as other:
        await redis_cache.set("k", "mine")

        assert await other.get("k") is None
        assert await other.add("k", "theirs") is True
        assert await redis_cache.get("k") == "mine"
