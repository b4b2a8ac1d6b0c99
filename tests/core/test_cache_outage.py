"""A Redis outage while serving: a clear 503, never a 500."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import PASSWORD, REQUIRE_SERVICES, make_user, running
from tests.live import free_port, listening
from tests.waiting import eventually_sync
from tollgate.app import create_app
from tollgate.core.settings import Settings

REDIS_START_SECONDS = 10.0
"""A local redis-server starts in milliseconds; this bounds a broken one."""


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    eventually_sync(
        lambda: listening(port, process), "the private redis-server listens", REDIS_START_SECONDS
    )


@pytest.fixture
def private_redis() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A redis-server of this test's own, which the test may stop."""
    binary = shutil.which("redis-server")
    if binary is None:
        if REQUIRE_SERVICES:
            pytest.fail("redis-server is required in this run")
        pytest.skip("needs redis-server on PATH")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_listening(port, process)
        yield f"redis://127.0.0.1:{port}/0", process
    finally:
        process.kill()
        process.wait()


async def test_request_needing_the_cache_while_redis_is_down_is_a_503(
    settings: Settings, private_redis: tuple[str, subprocess.Popen[bytes]]
) -> None:
    url, redis_process = private_redis
    application = create_app(settings.model_copy(update={"redis_url": url}), configure_logs=False)
    async with running(application) as app:
        user = await make_user(app.state.runtime)
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            form = {"username": user.username, "password": PASSWORD}
            assert (await http.post("/api/v1/auth/login", data=form)).status_code == 200

            redis_process.kill()
            redis_process.wait()
            response = await http.post("/api/v1/auth/login", data=form)

    assert response.status_code == 503
    assert response.json()["detail"]["code"] == "cache_unavailable"
    assert response.headers["retry-after"] == "5"
