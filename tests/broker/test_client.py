"""``tollgate.client.CredentialProvider`` against a real ``tollgate serve`` on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.broker.factories import (
    INTEGRATIONS,
    LEASES,
    TOKENS,
    bare_runtime,
    jira,
    ok,
    person,
    todoist,
)
from tests.conftest import bearer, token_for
from tests.live import server_env, serving
from tests.waiting import eventually
from tollgate.client import (
    AuthenticationError,
    CredentialProvider,
    CredentialsUnavailable,
    LeaseNotFound,
)
from tollgate.core.settings import Settings


@dataclass
class Broker:
    """A live server with one user, two integrations and an access token."""

    url: str
    token: str
    credentials: dict[str, dict[str, Any]]
    http: httpx.AsyncClient

    async def lease(self, lease_id: str) -> dict[str, Any]:
        details: dict[str, Any] = ok(
            await self.http.get(f"{LEASES}/{lease_id}", headers=bearer(self.token))
        )
        return details


@asynccontextmanager
async def broker(settings: Settings, tmp_path: Path, **env: str) -> AsyncIterator[Broker]:
    server = server_env(settings, TOLLGATE_LEASE_MIN_TTL_SECONDS="1", **env)
    async with (
        bare_runtime(settings) as runtime,
        serving(server, tmp_path / "server.log") as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        user = await person(runtime, "mcp-server")
        headers = bearer(token_for(runtime, user))
        credentials = {"todoist": todoist(), "jira": jira()}
        for service, values in credentials.items():
            ok(
                await http.post(
                    INTEGRATIONS, json={"service": service, "credentials": values}, headers=headers
                ),
                201,
            )
        token = ok(await http.post(TOKENS, json={"name": "client"}, headers=headers), 201)
        yield Broker(url=url, token=token["token"], credentials=credentials, http=http)


async def test_bootstrap_leases_the_stored_credentials_and_close_revokes_them(
    settings: Settings, tmp_path: Path
) -> None:
    async with broker(settings, tmp_path) as server:
        provider = CredentialProvider(server.url, server.token)

        state = await provider.bootstrap(["todoist", "jira"], ttl=3600, server_id="mcp-server-1")

        assert provider.me["available_services"] == ["jira", "todoist"]
        assert state.lease_id.startswith("lse_")
        assert state.expires_at.tzinfo is not None
        assert timedelta(minutes=59) < provider.remaining() <= timedelta(hours=1)
        assert await provider.get_credentials("todoist") == server.credentials["todoist"]
        assert await provider.get_credentials("jira") == server.credentials["jira"]
        assert await provider.get_credentials("slack") is None
        details = await server.lease(state.lease_id)
        assert details["server_id"] == "mcp-server-1"
        assert details["renewal_count"] == 0

        await provider.close()

        assert (await server.lease(state.lease_id))["status"] == "revoked"
        assert provider.lease is None


async def test_getting_credentials_near_the_end_renews_the_same_lease(
    settings: Settings, tmp_path: Path
) -> None:
    async with broker(settings, tmp_path) as server:
        provider = CredentialProvider(server.url, server.token, renew_margin=timedelta(seconds=2.5))
        state = await provider.bootstrap(["todoist"], ttl=4)
        first_expiry = state.expires_at

        assert await provider.get_credentials("todoist") == server.credentials["todoist"]
        assert (await server.lease(state.lease_id))["renewal_count"] == 0

        async def within_margin() -> bool:
            return provider.remaining() < provider.renew_margin

        await eventually(within_margin)
        assert await provider.get_credentials("todoist") == server.credentials["todoist"]

        assert provider.lease is not None
        assert provider.lease.lease_id == state.lease_id
        assert provider.lease.renewal_count == 1
        assert provider.lease.expires_at - first_expiry == timedelta(seconds=4)
        details = await server.lease(state.lease_id)
        assert details["renewal_count"] == 1
        assert details["status"] == "active"
        await provider.close()


async def test_a_lease_that_cannot_be_renewed_is_replaced_by_a_new_one(
    settings: Settings, tmp_path: Path
) -> None:
    async with broker(settings, tmp_path, TOLLGATE_LEASE_MAX_RENEWALS="1") as server:
        provider = CredentialProvider(server.url, server.token, renew_margin=timedelta(hours=2))
        first = await provider.bootstrap(["todoist", "jira"], ttl=60)
        await provider.get_credentials("todoist")
        assert provider.lease is not None
        assert (provider.lease.lease_id, provider.lease.renewal_count) == (first.lease_id, 1)

        assert await provider.get_credentials("jira") == server.credentials["jira"]

        second = provider.lease
        assert second.lease_id != first.lease_id
        assert second.history == [first.lease_id]
        assert second.renewal_count == 0
        assert second.credentials == server.credentials
        assert (await server.lease(first.lease_id))["status"] == "revoked"
        assert (await server.lease(second.lease_id))["status"] == "active"

        ok(await server.http.delete(f"{LEASES}/{second.lease_id}", headers=bearer(server.token)))
        assert await provider.get_credentials("todoist") == server.credentials["todoist"]

        third = provider.lease
        assert third.lease_id not in (first.lease_id, second.lease_id)
        assert third.history == [first.lease_id, second.lease_id]

        third.lease_id = "lse_unknownunknownunknown"
        await provider.refresh()

        fourth = provider.lease
        assert fourth.lease_id not in (first.lease_id, second.lease_id, third.lease_id)
        assert (await server.lease(fourth.lease_id))["status"] == "active"
        await provider.close()
        assert (await server.lease(fourth.lease_id))["status"] == "revoked"


async def test_the_background_task_renews_without_being_asked(
    settings: Settings, tmp_path: Path
) -> None:
    async with broker(settings, tmp_path) as server:
        provider = CredentialProvider(
            server.url, server.token, renew_margin=timedelta(seconds=2), auto_refresh=True
        )
        state = await provider.bootstrap(["todoist"], ttl=3)
        first_expiry = state.expires_at

        async def renewed() -> dict[str, Any] | None:
            details = await server.lease(state.lease_id)
            return details if details["renewal_count"] >= 1 else None

        details = await eventually(renewed)

        assert details["status"] == "active"
        assert provider.lease is not None
        assert provider.lease.lease_id == state.lease_id
        await eventually(lambda: _renewed_locally(provider))
        assert provider.lease.expires_at - first_expiry == timedelta(seconds=3)
        await provider.close()
        assert (await server.lease(state.lease_id))["status"] == "revoked"


async def _renewed_locally(provider: CredentialProvider) -> bool:
    return provider.lease is not None and provider.lease.renewal_count >= 1


async def test_refusals_raise_clear_exceptions(settings: Settings, tmp_path: Path) -> None:
    async with broker(settings, tmp_path) as server:
        async with CredentialProvider(server.url, "mcp_" + "n" * 40) as impostor:
            with pytest.raises(AuthenticationError) as unauthenticated:
                await impostor.bootstrap(["todoist"])
        async with CredentialProvider(server.url, server.token) as provider:
            with pytest.raises(CredentialsUnavailable) as unavailable:
                await provider.bootstrap(["todoist", "slack", "gmail"])
        provider = CredentialProvider(server.url, server.token)
        state = await provider.bootstrap(["todoist"], ttl=60)
        state.lease_id = "lse_unknownunknownunknown"
        with pytest.raises(LeaseNotFound) as not_found:
            await provider.close()

    assert unauthenticated.value.status == 401
    assert unauthenticated.value.code == "invalid_token"
    assert unauthenticated.value.message == "Unauthenticated."
    assert unavailable.value.status == 422
    assert unavailable.value.code == "credentials_unavailable"
    assert unavailable.value.services == ["slack", "gmail"]
    assert not_found.value.status == 404
    assert not_found.value.code == "lease_not_found"
