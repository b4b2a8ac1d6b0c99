"""Account-key authentications per second, with the key cache and without.

Usage: python bench/auth_bench.py [--n 20000] [--database-url URL] [--redis-url URL]
Defaults to a fresh SQLite file and the memory cache. With --database-url (a PostgreSQL server
URL) a scratch database is created there and dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from scratch import scratch_database
from tollgate.accounts.keys import KeyStore
from tollgate.accounts.service import enable
from tollgate.core.crypto import generate_key_spec
from tollgate.core.database import transaction
from tollgate.core.runtime import Runtime
from tollgate.core.settings import Settings
from tollgate.identity.service import create_user
from tollgate.migrate import upgrade_to_head


async def _prepare(runtime: Runtime) -> str:
    async with transaction(runtime.sessions) as session:
        user = await create_user(
            session,
            username=f"bench-{uuid.uuid4().hex[:6]}",
            email=f"bench-{uuid.uuid4().hex[:6]}@example.com",
            password=None,
        )
        enabled = await enable(session, user, runtime.settings)
    return enabled.key.full


async def _rate(store: KeyStore, key: str, n: int, *, use_cache: bool) -> float:
    await store.authenticate(key, use_cache=use_cache)
    started = time.perf_counter()
    for _ in range(n):
        await store.authenticate(key, use_cache=use_cache)
    return n / (time.perf_counter() - started)


async def main(n: int, database_url: str | None, redis_url: str | None) -> None:
    """Print authentications per second with and without the cache, and their ratio."""
    with tempfile.TemporaryDirectory() as tmp:
        async with scratch_database(database_url, Path(tmp)) as url:
            await _measure(url, tmp, n, redis_url)


async def _measure(url: str, tmp: str, n: int, redis_url: str | None) -> None:
    await asyncio.to_thread(upgrade_to_head, url)
    settings = Settings(
        data_dir=Path(tmp),
        database_url=url,
        redis_url=redis_url or "",
        cache_prefix=f"bench:{uuid.uuid4().hex}:",
        jwt_secret_key="bench-secret-" + "x" * 32,
        encryption_keys=generate_key_spec(),
    )
    runtime = Runtime.build(settings)
    try:
        key = await _prepare(runtime)
        store = KeyStore(runtime.sessions, runtime.cache, ttl=300)
        cached = await _rate(store, key, n, use_cache=True)
        uncached = await _rate(store, key, max(n // 10, 100), use_cache=False)
    finally:
        await runtime.close()
    backend = f"{runtime.engine.dialect.name} + {'redis' if redis_url else 'memory'} cache"
    print(f"key authentication ({backend})")
    print(f"  with cache:    {cached:12,.0f} per second")
    print(f"  without cache: {uncached:12,.0f} per second")
    print(f"  ratio:         {cached / uncached:12.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    asyncio.run(main(args.n, args.database_url, args.redis_url))
