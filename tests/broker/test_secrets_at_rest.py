"""No plaintext secret at rest or in logs: integrations and leases are stored encrypted, and
neither the database, its files nor any log line holds a credential value."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests.broker.factories import (
    INTEGRATIONS,
    INVITATIONS,
    LEASES,
    ME,
    ORGS,
    TOKENS,
    bare_runtime,
    jira,
    notion,
    ok,
    person,
    running,
    secret,
)
from tests.conftest import bearer, is_postgres, token_for
from tests.live import server_env, serving
from tollgate.broker.leases import _lease_aad
from tollgate.core.runtime import Runtime
from tollgate.core.settings import Settings


async def broker_flow(
    client: httpx.AsyncClient, owner_jwt: str, member_jwt: str, member_id: int
) -> list[str]:
    """Integrations, a token and leases with unique secrets; returns every secret used."""
    owner_headers, member_headers = bearer(owner_jwt), bearer(member_jwt)
    jira_token, notion_token, todo_token = secret("jira"), secret("notion"), secret("todoist")
    rotated, gmail_secret, gmail_refresh = secret("rotated"), secret("gsecret"), secret("grefresh")
    org = ok(
        await client.post(ORGS, json={"name": "Team", "slug": "team"}, headers=owner_headers), 201
    )
    invitation = ok(
        await client.post(
            f"{ORGS}/{org['id']}/members", json={"user_id": member_id}, headers=owner_headers
        ),
        202,
    )
    ok(await client.post(f"{INVITATIONS}/{invitation['id']}/accept", headers=member_headers))
    for service, credentials in (("jira", jira(jira_token)), ("notion", notion(notion_token))):
        ok(
            await client.post(
                f"{ORGS}/{org['id']}/integrations",
                json={"service": service, "credentials": credentials},
                headers=owner_headers,
            ),
            201,
        )
    todo = ok(
        await client.post(
            INTEGRATIONS,
            json={"service": "todoist", "credentials": {"access_token": todo_token}},
            headers=member_headers,
        ),
        201,
    )
    gmail = {"client_id": "cid", "client_secret": gmail_secret, "refresh_token": gmail_refresh}
    ok(
        await client.post(
            INTEGRATIONS, json={"service": "gmail", "credentials": gmail}, headers=member_headers
        ),
        201,
    )
    refused = await client.post(
        INTEGRATIONS,
        json={"service": "slack", "credentials": {"bot_token": secret("x"), "bogus": secret("y")}},
        headers=member_headers,
    )
    assert refused.status_code == 422
    leaked_in_error = [v for v in json.loads(refused.request.content)["credentials"].values()]
    token = ok(await client.post(TOKENS, json={"name": "srv"}, headers=member_headers), 201)
    headers = bearer(token["token"])
    ok(await client.get(ME, headers=headers))
    first = ok(
        await client.post(
            LEASES, json={"services": ["jira", "notion", "todoist", "gmail"]}, headers=headers
        ),
        201,
    )
    assert first["credentials"]["todoist"]["access_token"] == todo_token
    ok(await client.post(f"{LEASES}/{first['lease_id']}/renew", headers=headers))
    ok(
        await client.patch(
            f"{INTEGRATIONS}/{todo['id']}",
            json={"credentials": {"access_token": rotated}},
            headers=member_headers,
        )
    )
    second = ok(await client.post(LEASES, json={"services": ["todoist"]}, headers=headers), 201)
    assert second["credentials"]["todoist"]["access_token"] == rotated
    ok(await client.delete(f"{LEASES}/{second['lease_id']}", headers=headers))
    bad = token["token"][:12] + "Q" * 40
    assert (await client.get(ME, headers=bearer(bad))).status_code == 401
    return [
        jira_token,
        notion_token,
        todo_token,
        rotated,
        gmail_secret,
        gmail_refresh,
        token["token"],
        bad,
        owner_jwt,
        member_jwt,
        *leaked_in_error,
    ]


async def raw_rows(runtime: Runtime, table: str) -> list[dict[str, Any]]:
    async with runtime.sessions() as session:
        rows = (await session.execute(text(f"SELECT * FROM {table}"))).mappings().all()
    return [dict(r) for r in rows]


def sqlite_files(runtime: Runtime) -> list[Path]:
    database = make_url(runtime.settings.resolved_database_url).database
    assert database
    main = Path(database)
    return [p for p in (main, main.with_name(main.name + "-wal")) if p.exists()]


async def test_the_database_holds_no_plaintext_secret(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    caplog.set_level(logging.DEBUG)
    assert caplog.handler.level == logging.DEBUG
    async with running(settings) as (runtime, client):
        owner = await person(runtime, "owner")
        member = await person(runtime, "member")
        secrets = await broker_flow(
            client, token_for(runtime, owner), token_for(runtime, member), member.id
        )

        integrations = await raw_rows(runtime, "integrations")
        leases = await raw_rows(runtime, "leases")
        everything = {
            table: await raw_rows(runtime, table)
            for table in (
                "integrations",
                "leases",
                "lease_integrations",
                "access_tokens",
                "user_activity_logs",
            )
        }

        assert len(integrations) == 4
        assert len(leases) == 2
        dumped = json.dumps(everything, default=str)
        for value in secrets:
            assert value not in dumped
        stored = {r["id"]: r["credentials_envelope"] for r in leases}
        for lease_id, envelope in stored.items():
            opened = json.loads(runtime.keyring.decrypt_text(envelope, _lease_aad(lease_id)))
            assert set(opened) <= {"jira", "notion", "todoist", "gmail"}
        assert any(
            secrets[0] in runtime.keyring.decrypt_text(e, _lease_aad(i)) for i, e in stored.items()
        )
        if not is_postgres():
            files = sqlite_files(runtime)
            assert files
            for path in files:
                content = path.read_bytes()
                for value in secrets:
                    assert value.encode() not in content, path

    assert any(r.name.startswith("sqlalchemy.engine") for r in caplog.records)
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    for value in secrets:
        assert value not in logged


async def test_a_live_server_logs_no_secret(settings: Settings, tmp_path: Path) -> None:
    log_path = tmp_path / "server.log"
    async with (
        bare_runtime(settings) as runtime,
        serving(server_env(settings, LOG_LEVEL="DEBUG"), log_path) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=10) as client,
    ):
        owner = await person(runtime, "owner")
        member = await person(runtime, "member")
        secrets = await broker_flow(
            client, token_for(runtime, owner), token_for(runtime, member), member.id
        )

    log = log_path.read_text()
    assert "/api/mcp/credentials/lease" in log
    assert len(log.splitlines()) > 20
    for value in secrets:
        assert value not in log
    for line in log.splitlines():
        assert json.loads(line)["message"] is not None
