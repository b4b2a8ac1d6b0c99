"""Schemathesis over the OpenAPI spec against a live server: no input gets a 500.

Run with ``make fuzz`` (deselected from the normal suite). On a PostgreSQL run the server
uses PostgreSQL, where out-of-range integers and NUL bytes would otherwise surface as errors.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from tests.conftest import JWT_SECRET, PASSWORD, TEST_DATABASE_URL, TEST_REDIS_URL
from tests.live import live_server, server_env
from tollgate.app import create_app
from tollgate.core.crypto import generate_key_spec
from tollgate.core.database import transaction
from tollgate.core.runtime import Runtime
from tollgate.core.settings import Settings
from tollgate.identity import service as users
from tollgate.migrate import upgrade_to_head

EXAMPLES_PER_OPERATION = int(os.environ.get("TOLLGATE_FUZZ_EXAMPLES", "40"))
"""Enough to try every parameter with bad values; raise it for a longer hunt."""

_spec_settings = Settings(jwt_secret_key=JWT_SECRET, encryption_keys=generate_key_spec())
schema = schemathesis.openapi.from_dict(create_app(_spec_settings, configure_logs=False).openapi())


def _fuzz_settings(tmp: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp,
        database_url=database_url,
        redis_url=TEST_REDIS_URL,
        cache_prefix=f"fuzz:{uuid.uuid4().hex}:",
        jwt_secret_key=JWT_SECRET,
        secret_key="fuzz-secret",
        encryption_keys=generate_key_spec(),
        stripe_webhook_secret="whsec_fuzz",
    )


async def _seed_superuser(app_settings: Settings) -> None:
    runtime = Runtime.build(app_settings)
    try:
        async with transaction(runtime.sessions) as session:
            await users.create_user(
                session,
                username="fuzzer",
                email="fuzzer@example.com",
                password=PASSWORD,
                is_superuser=True,
            )
    finally:
        await runtime.close()


@pytest.fixture(scope="module")
def fuzz_target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, str]]]:
    """A live server with a superuser whose MCP account is enabled; yields URL and headers."""
    tmp = tmp_path_factory.mktemp("fuzz")
    if TEST_DATABASE_URL:
        database_url: str = request.getfixturevalue("_postgres_database")
    else:
        database_url = f"sqlite+aiosqlite:///{tmp / 'fuzz.db'}"
        upgrade_to_head(database_url)
    app_settings = _fuzz_settings(tmp, database_url)
    asyncio.run(_seed_superuser(app_settings))
    with live_server(server_env(app_settings), tmp / "server.log") as base_url:
        login = httpx.post(
            f"{base_url}/api/v1/auth/login", data={"username": "fuzzer", "password": PASSWORD}
        )
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        assert httpx.post(f"{base_url}/api/mcp/enable", headers=headers).status_code == 200
        yield base_url, headers


@pytest.mark.fuzz
@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_route_answers_bad_input_with_a_server_error(
    case: Any, fuzz_target: tuple[str, dict[str, str]]
) -> None:
    base_url, headers = fuzz_target
    response = case.call(base_url=base_url, headers=headers, timeout=30)
    case.validate_response(response, checks=[not_a_server_error])
