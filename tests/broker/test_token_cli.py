"""``tollgate token create``: a token for an MCP server, printed once, with its scopes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx

from tests.broker.factories import LEASES, ME, TOKENS, assert_error, ok, person
from tests.conftest import auth, bearer
from tests.live import server_env
from tollgate.core.runtime import Runtime
from tollgate.core.settings import Settings

TOLLGATE = str(Path(sys.executable).with_name("tollgate"))


async def test_token_create_prints_a_working_token_with_the_scopes_asked_for(
    client: httpx.AsyncClient, runtime: Runtime, settings: Settings
) -> None:
    user = await person(runtime, "server-owner")

    done = await asyncio.to_thread(
        subprocess.run,
        [TOLLGATE, "token", "create", "--user", user.email, "--name", "ci", "--scope", "read"],
        env=server_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert token.startswith("mcpt_")
    assert ok(await client.get(ME, headers=bearer(token)))["user_id"] == user.id
    refused = await client.post(LEASES, json={"services": ["todoist"]}, headers=bearer(token))
    assert_error(refused, 403, "insufficient_scope")
    [listed] = ok(await client.get(TOKENS, headers=auth(runtime, user)))
    assert listed["name"] == "ci"
    assert listed["scopes"] == ["read"]
    assert listed["token_prefix"] == token[:12]
    assert listed["expires_at"] is not None
