"""Test fixtures: a migrated database per test (SQLite, or PostgreSQL when configured),
the cache (memory, or Redis when configured), the app over ASGI, and small factories."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tollgate.app import create_app
from tollgate.core.crypto import generate_key_spec
from tollgate.core.database import transaction
from tollgate.core.runtime import Runtime
from tollgate.core.settings import DEFAULT_ALLOWED_HOSTS, Settings, normalise_database_url
from tollgate.identity import passwords
from tollgate.identity import service as users
from tollgate.identity.models import Role, User
from tollgate.migrate import upgrade_to_head
from tollgate.models import Base

TEST_DATABASE_URL = os.environ.get("TOLLGATE_TEST_DATABASE_URL", "")
TEST_REDIS_URL = os.environ.get("TOLLGATE_TEST_REDIS_URL", "")
REQUIRE_SERVICES = os.environ.get("TOLLGATE_TEST_REQUIRE_SERVICES") == "1"
TEST_CLIENT_HOST = "testserver"
"""The host of in-process HTTP clients (``base_url="http://testserver"``): a test setting,
never a production default."""

JWT_SECRET = "test-jwt-secret-that-is-long-enough-for-hs256"
PASSWORD = "correct-horse-battery"


def is_postgres() -> bool:
    """True when this run's database is PostgreSQL."""
    return bool(TEST_DATABASE_URL)


def require_postgres() -> None:
    """Skip (or fail, when services are required) a test that needs PostgreSQL."""
    if not TEST_DATABASE_URL:
        pytest.skip("needs PostgreSQL: set TOLLGATE_TEST_DATABASE_URL")


def require_redis() -> str:
    """The Redis URL of this run; skip (or fail when required) without one."""
    if not TEST_REDIS_URL:
        if REQUIRE_SERVICES:
            pytest.fail("TOLLGATE_TEST_REDIS_URL is required in this run")
        pytest.skip("needs Redis: set TOLLGATE_TEST_REDIS_URL")
    return TEST_REDIS_URL


async def _run_sql(url: str, *statements: str, autocommit: bool = False) -> None:
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    engine = create_async_engine(url, **options)
    try:
        async with engine.begin() as connection:
            for statement in statements:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Still argon2id, with small costs: the suite hashes many passwords."""
    monkeypatch.setattr(
        passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )


@pytest.fixture(scope="session")
def _postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this run, migrated to head, dropped at the end."""
    admin_url = make_url(normalise_database_url(TEST_DATABASE_URL))
    name = f"tollgate_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    asyncio.run(
        _run_sql(admin_url.render_as_string(False), f'CREATE DATABASE "{name}"', autocommit=True)
    )
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade_to_head(url)
        yield url
    finally:
        asyncio.run(
            _run_sql(
                admin_url.render_as_string(False),
                f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
                autocommit=True,
            )
        )


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once; each test gets a copy."""
    path = tmp_path_factory.mktemp("template") / "tollgate.db"
    upgrade_to_head(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, migrated database for one test."""
    if is_postgres():
        url: str = request.getfixturevalue("_postgres_database")
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        asyncio.run(_run_sql(url, f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        return url
    if REQUIRE_SERVICES:
        pytest.fail("TOLLGATE_TEST_DATABASE_URL is required in this run")
    template: Path = request.getfixturevalue("_sqlite_template")
    path = tmp_path / "tollgate.db"
    shutil.copy(template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Settings for one test: its own database, cache namespace and secrets."""
    if REQUIRE_SERVICES and not TEST_REDIS_URL:
        pytest.fail("TOLLGATE_TEST_REDIS_URL is required in this run")
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        redis_url=TEST_REDIS_URL,
        cache_prefix=f"test:{uuid.uuid4().hex}:",
        jwt_secret_key=JWT_SECRET,
        secret_key="test-secret-key",
        encryption_keys=generate_key_spec(),
        refill_interval_seconds=3600,
        allowed_hosts=[*DEFAULT_ALLOWED_HOSTS, TEST_CLIENT_HOST],
    )


@asynccontextmanager
async def running(application: Any) -> AsyncIterator[Any]:
    """Run an app's lifespan in a task of its own until the block ends.

    The lifespan holds task groups, which must be left by the task that entered them; a
    fixture's setup and teardown may run in different tasks.
    """
    started, stop = asyncio.Event(), asyncio.Event()

    async def lifespan() -> None:
        async with application.router.lifespan_context(application):
            started.set()
            await stop.wait()

    task = asyncio.create_task(lifespan())
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        task.result()
    try:
        yield application
    finally:
        stop.set()
        await task


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Any]:
    """The app with its lifespan running."""
    async with running(create_app(settings, configure_logs=False)) as application:
        yield application


@pytest.fixture
def runtime(app: Any) -> Runtime:
    """The running app's runtime (database, cache, keyring)."""
    result = app.state.runtime
    assert isinstance(result, Runtime)
    return result


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app over ASGI."""
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def make_user(
    runtime: Runtime,
    *,
    username: str | None = None,
    email: str | None = None,
    role: str = Role.USER,
    is_superuser: bool = False,
    password: str = PASSWORD,
    active: bool = True,
) -> User:
    """A stored user (committed)."""
    name = username or f"user-{uuid.uuid4().hex[:8]}"
    async with transaction(runtime.sessions) as session:
        user = await users.create_user(
            session,
            username=name,
            email=email or f"{name}@example.com",
            password=password,
            role=role,
            is_superuser=is_superuser,
        )
        if not active:
            user.is_active = False
    return user


def bearer(token: str) -> dict[str, str]:
    """An Authorization header."""
    return {"Authorization": f"Bearer {token}"}


def token_for(runtime: Runtime, user: User) -> str:
    """A JWT for ``user``, as the login route would issue it."""
    return users.issue_access_token(runtime.settings, user)


def auth(runtime: Runtime, user: User) -> dict[str, str]:
    """The Authorization header of ``user``."""
    return bearer(token_for(runtime, user))


async def enable_account(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    """Enable MCP for the caller; returns the response body (with the key)."""
    response = await client.post("/api/mcp/enable", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
