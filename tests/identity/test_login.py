"""POST /api/v1/auth/login: credentials, the issued JWT, and throttling of failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
import jwt
from fastapi import FastAPI

from tests.conftest import JWT_SECRET, PASSWORD, bearer, make_user
from tollgate.app import create_app
from tollgate.core.runtime import Runtime
from tollgate.core.settings import Settings

LOGIN = "/api/v1/auth/login"
ME = "/api/v1/admin/users/me"


async def login(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    """Sign in with the OAuth2 password form."""
    return await client.post(LOGIN, data={"username": username, "password": password})


def client_at(app: FastAPI, address: str = "127.0.0.1") -> httpx.AsyncClient:
    """A client of ``app`` whose requests come from ``address``."""
    transport = httpx.ASGITransport(app=app, client=(address, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@asynccontextmanager
async def running(settings: Settings, **limits: int) -> AsyncIterator[tuple[Runtime, FastAPI]]:
    """An app of its own for ``settings`` with other login limits, lifespan running."""
    application = create_app(settings.model_copy(update=limits), configure_logs=False)
    async with application.router.lifespan_context(application):
        runtime = application.state.runtime
        assert isinstance(runtime, Runtime)
        yield runtime, application


def assert_throttled(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    detail = response.json()["detail"]
    assert detail["code"] == "too_many_attempts"
    assert detail["retry_after_seconds"] > 0


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["detail"]["code"] == "invalid_credentials"


async def test_login_by_username_returns_a_bearer_token_that_works(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await make_user(runtime, username="alice")
    response = await login(client, "alice", PASSWORD)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == runtime.settings.access_token_expire_minutes * 60
    me = await client.get(ME, headers=bearer(body["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["id"] == user.id
    assert me.json()["username"] == "alice"
    assert me.json()["last_login_at"] is not None


async def test_login_by_email_ignores_the_email_case(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await make_user(runtime, username="bob", email="bob@example.com")
    response = await login(client, "  Bob@EXAMPLE.com ", PASSWORD)
    assert response.status_code == 200, response.text
    me = await client.get(ME, headers=bearer(response.json()["access_token"]))
    assert me.json()["id"] == user.id


async def test_issued_token_names_the_user_by_id_and_token_version(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await make_user(runtime, username="carol")
    response = await login(client, "carol", PASSWORD)
    token = response.json()["access_token"]
    claims = jwt.decode(
        token,
        JWT_SECRET,
        algorithms=["HS256"],
        issuer=runtime.settings.jwt_issuer,
        audience=runtime.settings.jwt_audience,
        options={"require": ["exp", "iss", "aud"]},
    )
    assert claims["iss"] == "tollgate"
    assert claims["aud"] == "tollgate"
    assert claims["email"] == user.email
    assert claims["sub"] == str(user.id)
    assert claims["tv"] == user.token_version == 1
    lifetime = claims["exp"] - claims["iat"]
    assert lifetime == runtime.settings.access_token_expire_minutes * 60
    assert claims["exp"] > datetime.now(UTC).timestamp()


async def test_wrong_password_is_refused_as_invalid_credentials(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await make_user(runtime, username="dave")
    response = await login(client, "dave", PASSWORD + "x")
    assert_refused(response)
    assert response.json()["detail"]["message"] == "Incorrect username or password"
    assert "access_token" not in response.text


async def test_unknown_user_is_refused_like_a_wrong_password(client: httpx.AsyncClient) -> None:
    assert_refused(await login(client, "nobody", PASSWORD))
    assert_refused(await login(client, "nobody@example.com", PASSWORD))


async def test_inactive_user_cannot_sign_in_even_with_the_right_password(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await make_user(runtime, username="erin", active=False)
    assert_refused(await login(client, "erin", PASSWORD))


async def test_user_is_locked_out_after_too_many_failures_even_with_right_password(
    settings: Settings,
) -> None:
    async with running(settings, login_max_failures_per_user=3) as (runtime, app):
        await make_user(runtime, username="frank")
        async with client_at(app) as client:
            for _ in range(runtime.settings.login_max_failures_per_user):
                assert_refused(await login(client, "frank", "wrong-password"))
            assert_throttled(await login(client, "frank", PASSWORD))
            assert_throttled(await login(client, "FRANK", PASSWORD))


async def test_user_lockout_holds_across_client_addresses(settings: Settings) -> None:
    limits = {"login_max_failures_per_user": 2, "login_max_failures_per_address": 100}
    async with running(settings, **limits) as (runtime, app):
        await make_user(runtime, username="grace")
        async with client_at(app, "10.0.0.1") as first, client_at(app, "10.0.0.2") as second:
            assert_refused(await login(first, "grace", "wrong-password"))
            assert_refused(await login(second, "grace", "wrong-password"))
        async with client_at(app, "10.0.0.3") as third:
            assert_throttled(await login(third, "grace", PASSWORD))


async def test_user_lockout_is_not_dodged_by_padding_the_username(settings: Settings) -> None:
    limits = {"login_max_failures_per_user": 2, "login_max_failures_per_address": 100}
    async with running(settings, **limits) as (runtime, app), client_at(app) as client:
        await make_user(runtime, username="heidi")
        assert_refused(await login(client, "heidi", "wrong-password"))
        assert_refused(await login(client, " heidi ", "wrong-password"))
        assert_throttled(await login(client, "  heidi", PASSWORD))
        assert_throttled(await login(client, "heidi", PASSWORD))


async def test_user_lockout_is_not_doubled_by_alternating_username_and_email(
    settings: Settings,
) -> None:
    limits = {"login_max_failures_per_user": 2, "login_max_failures_per_address": 100}
    async with running(settings, **limits) as (runtime, app), client_at(app) as client:
        user = await make_user(runtime, username="mallet")
        assert_refused(await login(client, "mallet", "wrong-password"))
        assert_refused(await login(client, user.email, "wrong-password"))
        assert_throttled(await login(client, "mallet", "wrong-password"))
        assert_throttled(await login(client, user.email.upper(), PASSWORD))


async def test_one_address_is_locked_out_after_failures_across_usernames(
    settings: Settings,
) -> None:
    limits = {"login_max_failures_per_user": 100, "login_max_failures_per_address": 3}
    async with running(settings, **limits) as (runtime, app), client_at(app) as client:
        await make_user(runtime, username="ivan")
        for name in ("mallory-1", "mallory-2", "mallory-3"):
            assert_refused(await login(client, name, "guess"))
        assert_throttled(await login(client, "ivan", PASSWORD))
        async with client_at(app, "10.0.0.9") as elsewhere:
            response = await login(elsewhere, "ivan", PASSWORD)
            assert response.status_code == 200, response.text


async def test_success_clears_the_users_failure_count(settings: Settings) -> None:
    limits = {"login_max_failures_per_user": 3, "login_max_failures_per_address": 100}
    async with running(settings, **limits) as (runtime, app), client_at(app) as client:
        await make_user(runtime, username="judy")
        for _ in range(2):
            assert_refused(await login(client, "judy", "wrong-password"))
        assert (await login(client, "judy", PASSWORD)).status_code == 200
        for _ in range(2):
            assert_refused(await login(client, "judy", "wrong-password"))
        response = await login(client, "judy", PASSWORD)
        assert response.status_code == 200, response.text
        for _ in range(3):
            assert_refused(await login(client, "judy", "wrong-password"))
        assert_throttled(await login(client, "judy", PASSWORD))


async def test_login_form_needs_username_and_password(client: httpx.AsyncClient) -> None:
    response = await client.post(LOGIN, data={"username": "someone"})
    assert response.status_code == 422
    assert response.json()["detail"]["code"] == "validation_error"


async def test_concurrent_guesses_get_no_more_tries_than_the_limit(settings: Settings) -> None:
    limits = {"login_max_failures_per_user": 2, "login_max_failures_per_address": 100}
    async with running(settings, **limits) as (runtime, app), client_at(app) as client:
        await make_user(runtime, username="kate")
        guesses = [login(client, "kate", f"guess-{n}") for n in range(6)]
        statuses = sorted(r.status_code for r in await asyncio.gather(*guesses))
        assert statuses == [401, 401, 429, 429, 429, 429]
        assert_throttled(await login(client, "kate", PASSWORD))
