"""Leases created and renewed per second, through the broker's service functions.

Usage: python bench/lease_bench.py [--leases 500] [--database-url postgresql://...]
A fresh SQLite file by default; with --database-url a scratch PostgreSQL database is created
there and dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from scratch import scratch_database
from tollgate.broker import audit, integrations, leases
from tollgate.broker.models import IntegrationStatus
from tollgate.core.crypto import generate_key_spec
from tollgate.core.database import transaction
from tollgate.core.runtime import Runtime
from tollgate.core.settings import Settings
from tollgate.identity.models import User
from tollgate.identity.service import create_user
from tollgate.migrate import upgrade_to_head

ACTOR = audit.Actor(client_address="bench")


async def _user_with_credentials(runtime: Runtime) -> User:
    async with transaction(runtime.sessions) as session:
        user = await create_user(
            session, username="bench", email="bench@example.com", password=None
        )
        for service, credentials in (
            ("todoist", {"access_token": "bench-token"}),
            ("notion", {"access_token": "bench-token", "database_id": "db"}),
        ):
            await integrations.create(
                session,
                runtime.keyring,
                integrations.IntegrationInput(
                    service=service,
                    name=None,
                    credentials=credentials,
                    status=IntegrationStatus.ACTIVE,
                ),
                owner_user=user,
                owner_org=None,
                actor=ACTOR,
            )
    return user


async def _create(runtime: Runtime, user: User, count: int) -> tuple[list[str], float]:
    request = leases.LeaseRequest(services=["todoist", "notion"], ttl=3600, server_id="bench")
    ids: list[str] = []
    started = time.perf_counter()
    for _ in range(count):
        async with transaction(runtime.sessions) as session:
            issued = await leases.create(
                session,
                runtime.keyring,
                runtime.settings,
                user,
                request,
                token_id=None,
                actor=ACTOR,
            )
            ids.append(issued.lease.id)
    return ids, count / (time.perf_counter() - started)


async def _renew(runtime: Runtime, user: User, ids: list[str]) -> float:
    started = time.perf_counter()
    for lease_id in ids:
        async with transaction(runtime.sessions) as session:
            await leases.renew(session, lease_id, user, ACTOR)
    return len(ids) / (time.perf_counter() - started)


async def main(count: int, database_url: str | None) -> None:
    """Print leases created and renewed per second."""
    with tempfile.TemporaryDirectory() as tmp:
        async with scratch_database(database_url, Path(tmp)) as url:
            await asyncio.to_thread(upgrade_to_head, url)
            settings = Settings(
                data_dir=Path(tmp),
                database_url=url,
                cache_prefix=f"bench:{uuid.uuid4().hex}:",
                jwt_secret_key="bench-" + "x" * 40,
                encryption_keys=generate_key_spec(),
            )
            runtime = Runtime.build(settings)
            try:
                user = await _user_with_credentials(runtime)
                ids, created = await _create(runtime, user, count)
                renewed = await _renew(runtime, user, ids)
            finally:
                await runtime.close()
            backend = runtime.engine.dialect.name
    print(f"leases ({backend}, {count} each, one transaction per operation)")
    print(f"  created: {created:10,.0f} per second")
    print(f"  renewed: {renewed:10,.0f} per second")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leases", type=int, default=500)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    asyncio.run(main(args.leases, args.database_url))
