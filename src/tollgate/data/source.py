"""Read-only access to whitelisted tables of a database, with sensitive fields removed.

Tables are reflected from the data source; only those in ``MCP_ALLOWED_MODELS`` can be
read. Filters are equality only, on existing non-sensitive columns, always bound as
parameters. The connection itself is read-only where the engine allows it (SQLite
``mode=ro``, PostgreSQL read-only transactions).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import MetaData, Table, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

SEED_SENSITIVE_FIELDS = frozenset(
    {
        "password_hash",
        "password",
        "secret",
        "token",
        "api_key",
        "totp_secret",
        "encryption_key",
        "private_key",
        "client_secret",
        "webhook_secret",
        "auth_token",
    }
)
"""Seed 002's list: never sent to a client, whatever the settings say."""

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
"""Seed 002's page sizes: 50 by default; a larger limit is capped at 100."""

MAX_OFFSET = 1_000_000
"""Deeper than this is refused: page with filters instead."""


class DataError(Exception):
    """A request the data source refuses; the message is what the client sees."""


class QueryFailed(DataError):
    """The database refused a query (a value of the wrong type, ...); ``cause`` names the
    driver's error without its text, which may carry the values."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


@dataclass(frozen=True)
class Page:
    """Records of one list or query."""

    records: list[dict[str, Any]]
    limit: int
    offset: int


def _read_only_engine(url: str) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            parsed = parsed.set(database=f"file:{database}?mode=ro", query={"uri": "true"})
        return create_async_engine(parsed)
    return create_async_engine(
        parsed, execution_options={"postgresql_readonly": True}, pool_pre_ping=True
    )


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return None
    return value


class DataSource:
    """The whitelisted tables of one database, read-only."""

    def __init__(self, url: str, allowed: Sequence[str], sensitive_patterns: Sequence[str]):
        self.url = url
        self.allowed = [name for name in allowed if name]
        self._patterns = [re.compile(p, re.IGNORECASE) for p in sensitive_patterns]
        self._engine: AsyncEngine | None = None
        self._tables: dict[str, Table] | None = None
        self._lock = asyncio.Lock()

    def is_sensitive(self, column: str) -> bool:
        """Whether a column's values must never leave the server."""
        lowered = column.lower()
        return lowered in SEED_SENSITIVE_FIELDS or any(p.search(lowered) for p in self._patterns)

    async def tables(self) -> dict[str, Table]:
        """The allowed tables that exist, reflected once."""
        if self._tables is None:
            async with self._lock:
                if self._tables is None:
                    self._tables = await self._reflect()
        return self._tables

    async def _reflect(self) -> dict[str, Table]:
        self._engine = self._engine or _read_only_engine(self.url)
        metadata = MetaData()
        async with self._engine.connect() as connection:
            names = set(await connection.run_sync(lambda c: c.dialect.get_table_names(c)))
            wanted = [name for name in self.allowed if name in names]
            await connection.run_sync(lambda c: metadata.reflect(c, only=wanted))
        return {name: metadata.tables[name] for name in wanted}

    async def table(self, model: str) -> Table:
        """The allowed table called ``model``."""
        if model not in self.allowed:
            raise DataError(
                f"Model '{model}' not allowed. Allowed models: {', '.join(self.allowed)}"
            )
        table = (await self.tables()).get(model)
        if table is None:
            raise DataError(f"Model '{model}' is not available in the data source")
        return table

    def _visible(self, table: Table, row: Any) -> dict[str, Any]:
        return {
            key: _plain(value)
            for key, value in row._mapping.items()
            if not self.is_sensitive(str(key)) and key in table.columns
        }

    async def list_records(
        self, model: str, *, limit: Any = None, offset: Any = None, filters: Any = None
    ) -> Page:
        """A page of ``model``'s records matching equality ``filters``."""
        table = await self.table(model)
        page_limit = _bounded_int(limit, "limit", DEFAULT_LIMIT, low=1, high=None)
        page_limit = min(page_limit, MAX_LIMIT)
        page_offset = _bounded_int(offset, "offset", 0, low=0, high=MAX_OFFSET)
        visible = [c for c in table.columns if not self.is_sensitive(c.name)]
        query = select(*visible).limit(page_limit).offset(page_offset)
        for name, value in _filters(filters).items():
            column = table.columns.get(name)
            if column is None or self.is_sensitive(name):
                raise DataError(f"Invalid filter field: {name}")
            query = query.where(column == _filter_value(name, value))
        primary = list(table.primary_key.columns)
        query = query.order_by(*(primary or visible[:1]))
        rows = await self._fetch(query)
        return Page([self._visible(table, r) for r in rows], page_limit, page_offset)

    async def get_record(self, model: str, record_id: Any) -> dict[str, Any]:
        """One record of ``model`` by its primary key."""
        table = await self.table(model)
        primary = list(table.primary_key.columns)
        if len(primary) != 1:
            raise DataError(f"Model '{model}' has no single primary key")
        if record_id is None:
            raise DataError("Missing required parameter: id")
        key = _filter_value("id", record_id)
        visible = [c for c in table.columns if not self.is_sensitive(c.name)]
        rows = await self._fetch(select(*visible).where(primary[0] == key).limit(1))
        if not rows:
            raise DataError(f"Record not found: {model} {record_id}")
        return self._visible(table, rows[0])

    async def _fetch(self, query: Any) -> list[Any]:
        assert self._engine is not None
        try:
            async with self._engine.connect() as connection:
                return list((await connection.execute(query)).all())
        except (DBAPIError, StatementError) as exc:
            cause = type(exc.orig if isinstance(exc, DBAPIError) else exc).__name__
            raise QueryFailed("Query failed: check the filter values", cause) from exc

    async def close(self) -> None:
        """Release the connections."""
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None


def _bounded_int(value: Any, name: str, default: int, *, low: int, high: int | None) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(f"Invalid parameter: {name} must be an integer")
    if value < low or (high is not None and value > high):
        limit = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise DataError(f"Invalid parameter: {name} must be {limit}")
    return value


def _filters(filters: Any) -> dict[str, Any]:
    if filters is None:
        return {}
    if not isinstance(filters, dict):
        raise DataError("Invalid parameter: filters must be an object of field=value pairs")
    return filters


def _filter_value(name: str, value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    raise DataError(f"Invalid filter value for {name}: only exact values are supported")
