"""Two app processes sharing the database and Redis behave as one gateway."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import PASSWORD, make_user, require_redis
from tests.live import live_server, server_env
from tests.waiting import eventually_sync
from tollgate.core.runtime import Runtime
from tollgate.core.settings import Settings

REFUSAL_DEADLINE_SECONDS = 1.0
"""The issue's promise: the other process refuses a replaced key within a second."""


async def test_key_regenerated_through_one_process_is_refused_by_the_other(
    settings: Settings, tmp_path: Path
) -> None:
    require_redis()
    runtime = Runtime.build(settings)
    try:
        user = await make_user(runtime)
    finally:
        await runtime.close()
    env = server_env(settings)
    with (
        live_server(env, tmp_path / "a.log") as server_a,
        live_server(env, tmp_path / "b.log") as server_b,
        httpx.Client(timeout=10) as http,
    ):
        login = http.post(
            f"{server_a}/api/v1/auth/login", data={"username": user.username, "password": PASSWORD}
        )
        jwt_headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        old_key = http.post(f"{server_a}/api/mcp/enable", headers=jwt_headers).json()["mcp_api_key"]
        old_headers = {"Authorization": f"Bearer {old_key}"}
        assert http.get(f"{server_b}/api/mcp/account", headers=old_headers).status_code == 200

        regenerated = http.post(f"{server_a}/api/mcp/regenerate-key", headers=jwt_headers)
        assert regenerated.status_code == 200
        eventually_sync(
            lambda: http.get(f"{server_b}/api/mcp/account", headers=old_headers).status_code == 401,
            "process B refuses the replaced key",
            REFUSAL_DEADLINE_SECONDS,
        )
        new_headers = {"Authorization": f"Bearer {regenerated.json()['mcp_api_key']}"}
        assert http.get(f"{server_b}/api/mcp/account", headers=new_headers).status_code == 200
