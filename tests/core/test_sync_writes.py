"""SyncWrites: a synchronous function's writes are committed when it returns and rolled back
when it raises, on SQLite (its own thread and connection) and on PostgreSQL (run_sync)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from tollgate.core.runtime import Runtime


class Refused(Exception):
    """Raised by the work below after its write."""


async def test_work_commits_when_it_returns_and_rolls_back_when_it_raises(
    runtime: Runtime,
) -> None:
    table = f"sync_writes_{uuid.uuid4().hex[:8]}"
    await runtime.writes.run(lambda s: s.execute(text(f"CREATE TABLE {table} (n INTEGER)")))

    def insert(session: Session, n: int) -> int:
        session.execute(text(f"INSERT INTO {table} (n) VALUES (:n)"), {"n": n})
        return n

    def insert_then_fail(session: Session) -> None:
        insert(session, 2)
        raise Refused

    try:
        assert await runtime.writes.run(lambda s: insert(s, 1)) == 1
        with pytest.raises(Refused):
            await runtime.writes.run(insert_then_fail)
        async with runtime.sessions() as session:
            rows = (await session.execute(text(f"SELECT n FROM {table}"))).scalars().all()
        assert rows == [1]
    finally:
        await runtime.writes.run(lambda s: s.execute(text(f"DROP TABLE {table}")))
