"""Database plumbing: engine, sessions, the declarative base and portable SQL helpers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import asyncpg
from sqlalchemy import DateTime, Engine, MetaData, Table, event, select
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator

from tollgate.core import rawsql

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_SECONDS = 30
"""How long a SQLite writer waits for the write lock before giving up."""

MAX_ID = 2**31 - 1
"""Largest integer id a 32-bit primary key holds; larger ids in requests are refused as 4xx."""

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every Tollgate model."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, whatever the database."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; Tollgate stores timezone-aware UTC only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        assert isinstance(moment, datetime)
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)


class utcnow(FunctionElement[datetime]):  # noqa: N801 - reads like the SQL function it renders
    """The database's own clock, in UTC: used wherever an expiry decision is made."""

    type = UTCDateTime()
    inherit_cache = True


@compiles(utcnow, "postgresql")
def _utcnow_pg(element: utcnow, compiler: Any, **kw: Any) -> str:
    return "statement_timestamp()"


@compiles(utcnow, "sqlite")
def _utcnow_sqlite(element: utcnow, compiler: Any, **kw: Any) -> str:
    return "strftime('%Y-%m-%d %H:%M:%f', 'now')"


class utc_month(FunctionElement[str]):  # noqa: N801
    """The current UTC month as ``YYYY-MM``, by the database's clock."""

    inherit_cache = True


@compiles(utc_month, "postgresql")
def _utc_month_pg(element: utc_month, compiler: Any, **kw: Any) -> str:
    return "to_char(statement_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM')"


@compiles(utc_month, "sqlite")
def _utc_month_sqlite(element: utc_month, compiler: Any, **kw: Any) -> str:
    return "strftime('%Y-%m', 'now')"


class add_seconds(FunctionElement[datetime]):  # noqa: N801
    """``moment + seconds`` in SQL, for expiry arithmetic done by the database."""

    type = UTCDateTime()
    inherit_cache = True


@compiles(add_seconds, "postgresql")
def _add_seconds_pg(element: add_seconds, compiler: Any, **kw: Any) -> str:
    moment, seconds = (compiler.process(c, **kw) for c in element.clauses)
    return f"({moment} + make_interval(secs => {seconds}))"


@compiles(add_seconds, "sqlite")
def _add_seconds_sqlite(element: add_seconds, compiler: Any, **kw: Any) -> str:
    moment, seconds = (compiler.process(c, **kw) for c in element.clauses)
    return f"strftime('%Y-%m-%d %H:%M:%f', {moment}, '+' || ({seconds}) || ' seconds')"


class earliest(FunctionElement[datetime]):  # noqa: N801
    """The earlier of two timestamps."""

    type = UTCDateTime()
    inherit_cache = True


@compiles(earliest, "postgresql")
def _earliest_pg(element: earliest, compiler: Any, **kw: Any) -> str:
    return f"LEAST({compiler.process(element.clauses, **kw)})"


@compiles(earliest, "sqlite")
def _earliest_sqlite(element: earliest, compiler: Any, **kw: Any) -> str:
    return f"MIN({compiler.process(element.clauses, **kw)})"


def _configure_sqlite(engine: Engine) -> None:
    """WAL, foreign keys, and real transactions (BEGIN IMMEDIATE) for SQLite.

    pysqlite's own transaction handling skips BEGIN and breaks SAVEPOINT; taking the write
    lock at BEGIN also avoids SQLITE_BUSY_SNAPSHOT when a read is followed by a write.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for ``url``, tuned for its dialect.

    SQLite has one writer at a time, and every transaction here takes the write lock, so one
    pooled connection per process is all it can use: transactions then queue on the pool
    (woken at once) instead of in SQLite's busy handler (which sleeps between retries).
    """
    if url.startswith("sqlite"):
        kwargs.setdefault("pool_size", 1)
        kwargs.setdefault("max_overflow", 0)
        kwargs.setdefault("pool_timeout", SQLITE_BUSY_TIMEOUT_SECONDS)
        engine = create_async_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}, **kwargs
        )
        _configure_sqlite(engine.sync_engine)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


WRITES_POOL_SIZE = 2
"""Connections of the background writers on PostgreSQL (the settler and the analytics
recorder each commit one batch at a time)."""


class SyncWrites:
    """Write transactions done by plain synchronous functions of a :class:`Session`, for the
    background writers that commit many rows at once (call records, analytics).

    On SQLite they run in one thread of their own over a synchronous connection: one hop to
    the thread per transaction, where aiosqlite takes several per statement. On PostgreSQL
    they run on an engine of their own (``run_sync``), whose commits do not wait for the
    write-ahead log to reach the disk (``synchronous_commit = off``): as durable as SQLite's
    WAL with ``synchronous=NORMAL``. A crash of Tollgate loses nothing committed; a crash of
    the database server may lose the last fraction of a second of these writes, never half
    of a transaction. The pool skips the liveness ping: a failed batch is retried.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._thread_engine: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._pool: Any = None
        if engine.dialect.name == "sqlite":
            self._thread_engine = create_sync_engine(
                engine.url.set(drivername="sqlite"),
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
                pool_size=1,
                max_overflow=0,
            )
            _configure_sqlite(self._thread_engine)
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writes")
        else:
            self._engine = create_async_engine(
                engine.url,
                pool_size=WRITES_POOL_SIZE,
                max_overflow=0,
                pool_pre_ping=False,
                connect_args={"server_settings": {"synchronous_commit": "off"}},
            )
        self._sessions = create_session_factory(self._engine)

    async def run(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in a transaction of its own, committed when it returns."""
        if self._thread is None:
            async with self._sessions() as session, session.begin():
                return await session.run_sync(work)
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._in_thread, work)

    async def run_steps(self, work: Callable[[Dialect], rawsql.Steps[T]]) -> T:
        """Run the statements ``work`` yields (see ``core.rawsql``) on the driver itself,
        in a transaction of their own, committed when it returns: for the few statements
        the background writers run on every batch."""
        if self._thread is not None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._thread, self._steps_in_thread, work)
        pool = await self._driver_pool()
        async with pool.acquire() as connection, connection.transaction():
            return await rawsql.drive_asyncpg(work(self._engine.dialect), connection)

    def _steps_in_thread(self, work: Callable[[Dialect], rawsql.Steps[T]]) -> T:
        assert self._thread_engine is not None
        with self._thread_engine.begin() as connection:
            cursor = connection.connection.cursor()
            try:
                return rawsql.drive_cursor(work(connection.dialect), cursor)
            finally:
                cursor.close()

    async def _driver_pool(self) -> Any:
        """The asyncpg pool of :meth:`run_steps` (PostgreSQL), opened on first use."""
        if self._pool is None:
            url = self._engine.url.set(drivername="postgresql")
            self._pool = await asyncpg.create_pool(
                url.render_as_string(hide_password=False),
                min_size=1,
                max_size=WRITES_POOL_SIZE,
                server_settings={"synchronous_commit": "off"},
            )
        return self._pool

    def _in_thread(self, work: Callable[[Session], T]) -> T:
        assert self._thread_engine is not None
        with Session(self._thread_engine, expire_on_commit=False) as session, session.begin():
            return work(session)

    async def close(self) -> None:
        """Finish what was submitted and release the writers' connections."""
        if self._thread is not None:
            await asyncio.to_thread(self._thread.shutdown, wait=True)
        if self._thread_engine is not None:
            self._thread_engine.dispose()
        else:
            await self._engine.dispose()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


def table_of(model: type[Base]) -> Table:
    """A model's table, for Core statements that skip the ORM's per-row work."""
    return cast(Table, model.__table__)


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


AfterCommit = Callable[[], Awaitable[None]]


def after_commit(session: AsyncSession, action: AfterCommit) -> None:
    """Queue ``action`` to run once the session's transaction has committed.

    Used for work that must not happen if the transaction rolls back: invalidating a cache
    entry, publishing an event.
    """
    session.info.setdefault("after_commit", []).append(action)


async def commit(session: AsyncSession) -> None:
    """Commit, then run the actions queued with :func:`after_commit`."""
    await session.commit()
    actions: list[AfterCommit] = session.info.pop("after_commit", [])
    for action in actions:
        await action()


@asynccontextmanager
async def transaction(
    factory: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A session whose transaction commits on success and rolls back on error."""
    async with factory() as session:
        try:
            yield session
            await commit(session)
        except BaseException:
            session.info.pop("after_commit", None)
            await session.rollback()
            raise


async def database_now(session: AsyncSession) -> datetime:
    """The database clock's current time (UTC, aware)."""
    value = (await session.execute(select(utcnow()))).scalar_one()
    assert isinstance(value, datetime)
    return value
