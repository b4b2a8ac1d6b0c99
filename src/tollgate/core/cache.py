"""Shared cache: one interface, an in-process memory backend and a Redis backend.

Anything that must hold across processes (rate limits, invalidation tombstones, locks,
live events) goes through :class:`Cache`. Values are strings; callers JSON-encode.
Every key and pub/sub channel is namespaced with the prefix given at construction.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from types import TracebackType
from typing import Any, Protocol, Self, cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

DEFAULT_PREFIX = "tollgate:"
"""Namespace for every key and channel, so several apps can share one Redis database."""

LOCK_POLL_MIN_DELAY = 0.005
"""First wait between blocking-acquire attempts: short locks hand over with little latency."""

LOCK_POLL_MAX_DELAY = 0.05
"""Backoff cap, so long waits cost at most ~20 attempts per second per waiter."""

MEMORY_SWEEP_INTERVAL = 60.0
"""Seconds between full scans for expired keys that nobody reads again (lazy expiry misses them)."""

REDIS_MAX_CONNECTIONS = 100
"""Per-process connection cap; past it callers queue for a free connection instead of failing."""

REDIS_POOL_TIMEOUT = 5.0
"""Seconds a caller queues for a pooled connection before its command fails."""

PING_TIMEOUT = 2.0
"""Seconds a health check may take; an unreachable server must not hang the caller."""

SUBSCRIBE_CONFIRM_TIMEOUT = 5.0
"""Seconds to wait for Redis to confirm a subscription before giving up."""

LOCK_KEY_PREFIX = "lock:"
"""Sub-namespace for lock keys, so a lock name never collides with a plain key."""

_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

_EXTEND_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_INCR_WITH_TTL_SCRIPT = """
local created = redis.call('EXISTS', KEYS[1]) == 0
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if created then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
"""


class LockNotAcquired(Exception):
    """Raised when ``async with lock`` cannot take the lock within its timeout."""


def ttl_to_ms(ttl: float) -> int:
    """Convert a TTL in seconds to whole milliseconds, rounding up to at least 1 ms."""
    if not ttl > 0:
        raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
    return max(1, math.ceil(ttl * 1000))


class CacheLock(ABC):
    """A named lock that expires after ``ttl`` seconds so a crashed holder never blocks forever.

    Only the owner that took the lock can release or extend it. ``async with`` acquires
    (blocking, bounded by ``timeout``), raises :class:`LockNotAcquired` on timeout and
    releases on exit.
    """

    def __init__(
        self, name: str, ttl: float, *, owner: str | None = None, timeout: float | None = None
    ) -> None:
        ttl_to_ms(ttl)
        self.name = name
        self.ttl = ttl
        self.owner = owner if owner is not None else secrets.token_hex(16)
        self.timeout = timeout

    async def acquire(
        self,
        blocking: bool = True,
        timeout: float | None = None,  # noqa: ASYNC109 - interface mirrors redis-py Lock.acquire
    ) -> bool:
        """Take the lock; when ``blocking``, poll with backoff until taken or ``timeout`` passes."""
        if await self._try_acquire():
            return True
        if not blocking:
            return False
        loop = asyncio.get_running_loop()
        return await self._poll(None if timeout is None else loop.time() + timeout)

    async def _poll(self, deadline: float | None) -> bool:
        loop = asyncio.get_running_loop()
        delay = LOCK_POLL_MIN_DELAY
        while True:
            if deadline is None:
                await asyncio.sleep(delay)
            else:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                await asyncio.sleep(min(delay, remaining))
            if await self._try_acquire():
                return True
            delay = min(delay * 2, LOCK_POLL_MAX_DELAY)

    @abstractmethod
    async def _try_acquire(self) -> bool:
        """Take the lock once, without waiting."""

    @abstractmethod
    async def release(self) -> bool:
        """Release the lock if this owner still holds it; True if it was released."""

    @abstractmethod
    async def extend(self, ttl: float) -> bool:
        """Reset the lock's expiry to ``ttl`` seconds if this owner still holds it."""

    async def __aenter__(self) -> Self:
        if not await self.acquire(blocking=True, timeout=self.timeout):
            raise LockNotAcquired(f"lock {self.name!r} not acquired within {self.timeout}s")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.release()


class Cache(Protocol):
    """The shared cache interface both backends implement."""

    async def get(self, key: str) -> str | None:
        """Return the value stored at ``key``, or None if absent or expired."""
        ...

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        """Store ``value``; expire after ``ttl`` seconds, or never when None."""
        ...

    async def add(self, key: str, value: str, ttl: float | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent; True if it was stored."""
        ...

    async def delete(self, *keys: str) -> None:
        """Remove the given keys; missing keys are ignored."""
        ...

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Atomically add ``amount`` and return the new value.

        ``ttl`` applies only when this call creates the key (a fixed window).
        """
        ...

    def lock(
        self, name: str, ttl: float, *, owner: str | None = None, timeout: float | None = None
    ) -> CacheLock:
        """Return a lock named ``name``; ``timeout`` bounds the wait of ``async with``."""
        ...

    async def publish(self, channel: str, message: str) -> None:
        """Send ``message`` to every current subscriber of ``channel``."""
        ...

    async def publish_many(self, channel: str, messages: Sequence[str]) -> None:
        """Send each of ``messages``, in order, in one round trip."""
        ...

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[str]]:
        """Subscribe to ``channel``; the subscription is live once the context is entered."""
        ...

    async def ping(self) -> bool:
        """Return True if the backend is reachable."""
        ...

    async def close(self) -> None:
        """Release the backend's resources."""
        ...


SUBSCRIBER_QUEUE_LIMIT = 1000
"""Messages kept for one in-memory subscriber that does not read: past it the oldest are
dropped, so a stalled reader never grows memory (Redis bounds its own pub/sub buffers)."""


class _QueueMessages:
    """Async iterator over the messages delivered to one in-memory subscriber."""

    def __init__(self, queue: asyncio.Queue[str]) -> None:
        self._queue = queue

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str:
        return await self._queue.get()


class MemoryLock(CacheLock):
    """Lock held in a :class:`MemoryCache`; atomic because nothing awaits mid-operation."""

    def __init__(
        self,
        cache: MemoryCache,
        name: str,
        ttl: float,
        *,
        owner: str | None = None,
        timeout: float | None = None,
    ) -> None:
        super().__init__(name, ttl, owner=owner, timeout=timeout)
        self._cache = cache
        self._key = LOCK_KEY_PREFIX + name

    async def _try_acquire(self) -> bool:
        return await self._cache.add(self._key, self.owner, self.ttl)

    async def release(self) -> bool:
        """Release the lock if this owner still holds it; True if it was released."""
        if self._cache._read(self._key) != self.owner:
            return False
        self._cache._remove(self._key)
        return True

    async def extend(self, ttl: float) -> bool:
        """Reset the lock's expiry to ``ttl`` seconds if this owner still holds it."""
        if self._cache._read(self._key) != self.owner:
            return False
        self._cache._write(self._key, self.owner, ttl)
        return True


class MemoryCache:
    """Single-process cache: a dict with lazy expiry and asyncio queues for pub/sub."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = prefix
        self._data: dict[str, tuple[str, float | None]] = {}
        self._subscribers: dict[str, set[asyncio.Queue[str]]] = {}
        self._next_sweep = time.monotonic() + MEMORY_SWEEP_INTERVAL

    def _read(self, key: str) -> str | None:
        full_key = self.prefix + key
        entry = self._data.get(full_key)
        if entry is None:
            return None
        value, expires_at = entry
        if expires_at is not None and expires_at <= time.monotonic():
            del self._data[full_key]
            return None
        return value

    def _write(self, key: str, value: str, ttl: float | None) -> None:
        now = time.monotonic()
        expires_at = None if ttl is None else now + ttl_to_ms(ttl) / 1000
        self._data[self.prefix + key] = (value, expires_at)
        if now >= self._next_sweep:
            self._sweep(now)

    def _remove(self, key: str) -> None:
        self._data.pop(self.prefix + key, None)

    def _sweep(self, now: float) -> None:
        expired = [k for k, (_, exp) in self._data.items() if exp is not None and exp <= now]
        for full_key in expired:
            del self._data[full_key]
        self._next_sweep = now + MEMORY_SWEEP_INTERVAL

    async def get(self, key: str) -> str | None:
        """Return the value stored at ``key``, or None if absent or expired."""
        return self._read(key)

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        """Store ``value``; expire after ``ttl`` seconds, or never when None."""
        self._write(key, value, ttl)

    async def add(self, key: str, value: str, ttl: float | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent; True if it was stored."""
        if self._read(key) is not None:
            return False
        self._write(key, value, ttl)
        return True

    async def delete(self, *keys: str) -> None:
        """Remove the given keys; missing keys are ignored."""
        for key in keys:
            self._remove(key)

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Atomically add ``amount`` and return the new value.

        ``ttl`` applies only when this call creates the key (a fixed window).
        """
        current = self._read(key)
        if current is None:
            self._write(key, str(amount), ttl)
            return amount
        value = int(current) + amount
        _, expires_at = self._data[self.prefix + key]
        self._data[self.prefix + key] = (str(value), expires_at)
        return value

    def lock(
        self, name: str, ttl: float, *, owner: str | None = None, timeout: float | None = None
    ) -> CacheLock:
        """Return a lock named ``name``; ``timeout`` bounds the wait of ``async with``."""
        return MemoryLock(self, name, ttl, owner=owner, timeout=timeout)

    async def publish(self, channel: str, message: str) -> None:
        """Send ``message`` to every current subscriber of ``channel``."""
        for queue in self._subscribers.get(self.prefix + channel, ()):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(message)

    async def publish_many(self, channel: str, messages: Sequence[str]) -> None:
        """Send each of ``messages``, in order, in one round trip."""
        for message in messages:
            await self.publish(channel, message)

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[str]]:
        """Subscribe to ``channel``; the subscription is live once the context is entered."""
        full_channel = self.prefix + channel
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=SUBSCRIBER_QUEUE_LIMIT)
        self._subscribers.setdefault(full_channel, set()).add(queue)
        try:
            yield _QueueMessages(queue)
        finally:
            subscribers = self._subscribers[full_channel]
            subscribers.discard(queue)
            if not subscribers:
                del self._subscribers[full_channel]

    async def ping(self) -> bool:
        """Return True: the in-process backend is always reachable."""
        return True

    async def close(self) -> None:
        """Drop all stored keys."""
        self._data.clear()


class _PubSubMessages:
    """Async iterator over the data messages of one Redis pub/sub connection."""

    def __init__(self, pubsub: PubSub) -> None:
        self._pubsub = pubsub

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str:
        while True:
            message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            if message is not None and message["type"] == "message":
                return cast(str, message["data"])


class RedisLock(CacheLock):
    """Lock held in Redis: SET NX PX to take it, Lua compare-and-delete to release."""

    def __init__(
        self,
        cache: RedisCache,
        name: str,
        ttl: float,
        *,
        owner: str | None = None,
        timeout: float | None = None,
    ) -> None:
        super().__init__(name, ttl, owner=owner, timeout=timeout)
        self._cache = cache
        self._key = cache.prefix + LOCK_KEY_PREFIX + name

    async def _try_acquire(self) -> bool:
        taken = await self._cache.client.set(self._key, self.owner, nx=True, px=ttl_to_ms(self.ttl))
        return bool(taken)

    async def release(self) -> bool:
        """Release the lock if this owner still holds it; True if it was released."""
        deleted = await self._cache._release_script(keys=[self._key], args=[self.owner])
        return cast(int, deleted) == 1

    async def extend(self, ttl: float) -> bool:
        """Reset the lock's expiry to ``ttl`` seconds if this owner still holds it."""
        extended = await self._cache._extend_script(
            keys=[self._key], args=[self.owner, ttl_to_ms(ttl)]
        )
        return cast(int, extended) == 1


class RedisCache:
    """Cache shared across processes through one Redis server and its connection pool."""

    def __init__(self, url: str, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = prefix
        pool = BlockingConnectionPool.from_url(
            url,
            decode_responses=True,
            max_connections=REDIS_MAX_CONNECTIONS,
            timeout=REDIS_POOL_TIMEOUT,
        )
        self.client = Redis.from_pool(pool)
        self._release_script = self.client.register_script(_RELEASE_SCRIPT)
        self._extend_script = self.client.register_script(_EXTEND_SCRIPT)
        self._incr_script = self.client.register_script(_INCR_WITH_TTL_SCRIPT)

    async def get(self, key: str) -> str | None:
        """Return the value stored at ``key``, or None if absent or expired."""
        value = await self.client.get(self.prefix + key)
        return cast(str | None, value)

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        """Store ``value``; expire after ``ttl`` seconds, or never when None."""
        px = None if ttl is None else ttl_to_ms(ttl)
        await self.client.set(self.prefix + key, value, px=px)

    async def add(self, key: str, value: str, ttl: float | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent; True if it was stored."""
        px = None if ttl is None else ttl_to_ms(ttl)
        stored = await self.client.set(self.prefix + key, value, nx=True, px=px)
        return bool(stored)

    async def delete(self, *keys: str) -> None:
        """Remove the given keys; missing keys are ignored."""
        if keys:
            await self.client.delete(*(self.prefix + key for key in keys))

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Atomically add ``amount`` and return the new value.

        ``ttl`` applies only when this call creates the key (a fixed window).
        """
        full_key = self.prefix + key
        if ttl is None:
            return await self.client.incrby(full_key, amount)
        result: Any = await self._incr_script(keys=[full_key], args=[amount, ttl_to_ms(ttl)])
        return cast(int, result)

    def lock(
        self, name: str, ttl: float, *, owner: str | None = None, timeout: float | None = None
    ) -> CacheLock:
        """Return a lock named ``name``; ``timeout`` bounds the wait of ``async with``."""
        return RedisLock(self, name, ttl, owner=owner, timeout=timeout)

    async def publish(self, channel: str, message: str) -> None:
        """Send ``message`` to every current subscriber of ``channel``."""
        await self.client.publish(self.prefix + channel, message)

    async def publish_many(self, channel: str, messages: Sequence[str]) -> None:
        """Send each of ``messages``, in order, in one round trip."""
        if not messages:
            return
        pipeline = self.client.pipeline(transaction=False)
        for message in messages:
            pipeline.publish(self.prefix + channel, message)
        await pipeline.execute()

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[str]]:
        """Subscribe to ``channel``; the subscription is live once the context is entered."""
        full_channel = self.prefix + channel
        pubsub = self.client.pubsub()
        try:
            await pubsub.subscribe(full_channel)
            await _await_subscribe_confirmation(pubsub)
            yield _PubSubMessages(pubsub)
        finally:
            try:
                if pubsub.connection is not None:
                    with suppress(RedisError, OSError):
                        await pubsub.unsubscribe(full_channel)
            finally:
                await _close_pubsub(pubsub)

    async def ping(self) -> bool:
        """Return True if Redis answers a PING within ``PING_TIMEOUT`` seconds."""
        try:
            async with asyncio.timeout(PING_TIMEOUT):
                return bool(await self.client.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def close(self) -> None:
        """Close the client and its connection pool."""
        await self.client.aclose()


async def _await_subscribe_confirmation(pubsub: PubSub) -> None:
    """Wait for the server's subscribe reply, so publishes sent afterwards are delivered."""
    async with asyncio.timeout(SUBSCRIBE_CONFIRM_TIMEOUT):
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is not None and message["type"] == "subscribe":
                return


async def _close_pubsub(pubsub: PubSub) -> None:
    """Close a pub/sub connection (redis-py leaves ``PubSub.aclose`` unannotated)."""
    aclose = cast(Callable[[], Awaitable[None]], pubsub.aclose)
    await aclose()


def make_cache(redis_url: str | None, prefix: str = DEFAULT_PREFIX) -> Cache:
    """Build the Redis backend when ``redis_url`` is set, otherwise the in-memory one."""
    if redis_url:
        return RedisCache(redis_url, prefix)
    return MemoryCache(prefix)
