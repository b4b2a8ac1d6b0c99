"""The data source's own connection is read-only (SQLite ``mode=ro``, PostgreSQL read-only
transactions), beside the protocol's refusal of writes; and any database SQLAlchemy reaches
can be the source: here a PostgreSQL database with the helpdesk tables."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import TEST_DATABASE_URL, require_postgres
from tests.data.conftest import ask, helpdesk_path, serving, ws
from tollgate.core.settings import Settings, normalise_database_url
from tollgate.data.source import DataSource

WRITES = [
    "INSERT INTO tickets (id, title, status, priority, requester_id, created_at) "
    "VALUES (9999, 'x', 'open', 'low', 1, '2026-01-01')",
    "UPDATE users SET email = 'owned@example.com'",
    "DELETE FROM change_log",
    "CREATE TABLE planted (id INTEGER)",
    "DROP TABLE tickets",
]
"""Statements a read-only connection must refuse."""

PG_SCHEMA = [
    """CREATE TABLE users (
        id SERIAL PRIMARY KEY,
        email TEXT NOT NULL UNIQUE,
        first_name TEXT NOT NULL,
        last_name TEXT NOT NULL,
        is_super_admin BOOLEAN NOT NULL DEFAULT false,
        department TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        totp_secret TEXT,
        api_key TEXT,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE tickets (
        id SERIAL PRIMARY KEY,
        title TEXT NOT NULL,
        status TEXT NOT NULL,
        priority TEXT NOT NULL,
        requester_id INTEGER NOT NULL REFERENCES users(id),
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE change_log (
        id SERIAL PRIMARY KEY,
        ticket_id INTEGER NOT NULL REFERENCES tickets(id),
        field TEXT NOT NULL,
        old_value TEXT,
        new_value TEXT,
        changed_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )""",
    "CREATE TABLE sensitive_data (id SERIAL PRIMARY KEY, note TEXT)",
    """INSERT INTO users (email, first_name, last_name, is_super_admin, department,
        password_hash, totp_secret, api_key) VALUES
        ('admin@example.com', 'Admin', 'User', true, 'support',
         'pg-hash-secret-1', 'PGTOTP1', 'pg_live_key_1'),
        ('grace@example.com', 'Grace', 'Hopper', false, 'engineering',
         'pg-hash-secret-2', 'PGTOTP2', 'pg_live_key_2')""",
    """INSERT INTO tickets (title, status, priority, requester_id) VALUES
        ('Login fails', 'open', 'high', 1), ('Invoice wrong', 'closed', 'low', 2),
        ('API timeout', 'open', 'low', 2)""",
    "INSERT INTO change_log (ticket_id, field, old_value, new_value) VALUES "
    "(2, 'status', 'open', 'closed')",
    "INSERT INTO sensitive_data (note) VALUES ('do not read')",
]
PG_SECRETS = ["pg-hash-secret-1", "pg-hash-secret-2", "PGTOTP1", "PGTOTP2", "pg_live_key_1"]


async def _admin(url: str, *statements: str, autocommit: bool = False) -> list[Any]:
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    engine = create_async_engine(url, **options)
    results = []
    try:
        async with engine.begin() as connection:
            for statement in statements:
                result = await connection.execute(text(statement))
                results.append(list(result.all()) if result.returns_rows else None)
    finally:
        await engine.dispose()
    return results


@pytest.fixture
async def pg_helpdesk() -> AsyncIterator[str]:
    """A scratch PostgreSQL database with the helpdesk tables; its URL (plain driver form,
    as an operator would write ``TOLLGATE_DATA_URL``)."""
    require_postgres()
    server = make_url(normalise_database_url(TEST_DATABASE_URL))
    name = f"tollgate_data_{uuid.uuid4().hex[:10]}"
    admin = server.render_as_string(hide_password=False)
    await _admin(admin, f'CREATE DATABASE "{name}"', autocommit=True)
    url = server.set(database=name).render_as_string(hide_password=False)
    try:
        await _admin(url, *PG_SCHEMA)
        yield url.replace("postgresql+asyncpg://", "postgresql://", 1)
    finally:
        await _admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', autocommit=True)


async def _refuses_every_write(source: DataSource) -> None:
    await source.tables()
    engine = source._engine
    assert engine is not None
    for statement in WRITES:
        with pytest.raises(DBAPIError, match=r"(?i)read-?only"):
            async with engine.begin() as connection:
                await connection.execute(text(statement))


async def test_sqlite_source_connection_refuses_writes(data_settings: Settings) -> None:
    path = helpdesk_path(data_settings)
    before = path.read_bytes()
    source = DataSource(data_settings.resolved_data_url, ["users", "tickets", "change_log"], [])
    try:
        await _refuses_every_write(source)
    finally:
        await source.close()
    assert path.read_bytes() == before


async def test_postgres_source_connection_refuses_writes(pg_helpdesk: str) -> None:
    url = normalise_database_url(pg_helpdesk)
    source = DataSource(url, ["users", "tickets", "change_log"], [])
    try:
        await _refuses_every_write(source)
        page = await source.list_records("tickets")
    finally:
        await source.close()
    assert [r["id"] for r in page.records] == [1, 2, 3]
    [counts] = await _admin(
        url,
        "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM tickets), "
        "(SELECT count(*) FROM change_log), (SELECT count(*) FROM users "
        "WHERE email = 'owned@example.com')",
    )
    assert counts == [(2, 3, 1, 0)]


async def test_postgres_tables_are_read_over_the_websocket_without_sensitive_fields(
    data_settings: Settings, pg_helpdesk: str
) -> None:
    settings = data_settings.model_copy(update={"data_url": pg_helpdesk})
    async with serving(settings) as gateway, ws(gateway) as socket:
        users = await ask(socket, {"id": "u", "action": "list", "model": "users"})
        admin = await ask(
            socket, {"id": "g", "action": "get", "model": "users", "params": {"id": 1}}
        )
        open_tickets = await ask(
            socket,
            {
                "id": "q",
                "action": "query",
                "model": "tickets",
                "params": {"filters": {"status": "open"}},
            },
        )
        supers = await ask(
            socket,
            {
                "id": "s",
                "action": "list",
                "model": "users",
                "params": {"filters": {"is_super_admin": True}},
            },
        )
        changes = await ask(socket, {"id": "c", "action": "list", "model": "change_log"})
        hidden = await ask(socket, {"id": "h", "action": "list", "model": "sensitive_data"})
        by_secret = await ask(
            socket,
            {
                "id": "x",
                "action": "list",
                "model": "users",
                "params": {"filters": {"api_key": "pg_live_key_1"}},
            },
        )
        write = await ask(socket, {"id": "w", "action": "create", "model": "tickets"})
    assert users["status"] == "ok"
    assert users["count"] == 2
    assert set(users["data"][0]) == {
        "id",
        "email",
        "first_name",
        "last_name",
        "is_super_admin",
        "department",
        "created_at",
    }
    assert admin["data"]["email"] == "admin@example.com"
    assert isinstance(admin["data"]["created_at"], str)
    assert [t["id"] for t in open_tickets["data"]] == [1, 3]
    assert [u["id"] for u in supers["data"]] == [1]
    assert changes["count"] == 1
    assert hidden["error"] == (
        "Model 'sensitive_data' not allowed. Allowed models: users, tickets, change_log"
    )
    assert by_secret["error"] == "Invalid filter field: api_key"
    assert write["error"] == "Write operations not allowed in read-only mode: create"
    replies = str([users, admin, open_tickets, supers, changes, by_secret])
    assert not [secret for secret in PG_SECRETS if secret in replies]
    assert not [name for name in ("password_hash", "totp_secret") if name in replies]


async def test_postgres_query_error_is_an_error_reply_and_logged_as_the_seed_lists(
    data_settings: Settings, pg_helpdesk: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tollgate")
    settings = data_settings.model_copy(update={"data_url": pg_helpdesk})
    async with serving(settings) as gateway, ws(gateway) as socket:
        failed = await ask(
            socket,
            {
                "id": "f",
                "action": "list",
                "model": "tickets",
                "params": {"filters": {"requester_id": "not a number"}},
            },
        )
        after = await ask(
            socket, {"id": "a", "action": "get", "model": "tickets", "params": {"id": 2}}
        )
    assert failed == {
        "id": "f",
        "status": "error",
        "error": "Query failed: check the filter values",
    }
    assert (after["status"], after["data"]["title"]) == ("ok", "Invoice wrong")
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage().split(":")[0] for r in errors] == [
        "MCP list query failed for model tickets"
    ]
    assert "not a number" not in caplog.text


async def test_postgres_source_is_read_concurrently(pg_helpdesk: str) -> None:
    source = DataSource(normalise_database_url(pg_helpdesk), ["tickets"], [])
    try:
        pages = await asyncio.gather(*(source.get_record("tickets", n % 3 + 1) for n in range(30)))
    finally:
        await source.close()
    assert [p["id"] for p in pages] == [n % 3 + 1 for n in range(30)]
