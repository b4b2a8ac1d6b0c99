"""Scratch databases for benchmarks: a fresh SQLite file, or a new PostgreSQL database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tollgate.core.settings import normalise_database_url


async def _admin(url: str, statement: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@asynccontextmanager
async def scratch_database(server_url: str | None, folder: Path) -> AsyncIterator[str]:
    """A URL to an empty database, removed afterwards; SQLite in ``folder`` by default."""
    if not server_url:
        yield f"sqlite+aiosqlite:///{folder / 'bench.db'}"
        return
    base = make_url(normalise_database_url(server_url))
    name = f"tollgate_bench_{uuid.uuid4().hex[:8]}"
    await _admin(base.render_as_string(hide_password=False), f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        await _admin(
            base.render_as_string(hide_password=False),
            f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
        )
