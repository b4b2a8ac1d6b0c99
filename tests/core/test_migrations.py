"""The migrations build exactly the schema the models describe."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from tollgate.core.runtime import Runtime
from tollgate.models import Base


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_models_and_migrations_do_not_drift(runtime: Runtime) -> None:
    async with runtime.engine.connect() as connection:
        differences = await connection.run_sync(_diff)
    assert differences == [], f"models and migrations differ: {differences}"
