"""User JWTs on the bearer routes: seed 000's 401 texts, our claims, sibling-backend tokens."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from jwt.warnings import InsecureKeyLengthWarning
from sqlalchemy import func, select

from tests.conftest import JWT_SECRET, auth, bearer, make_user, token_for
from tollgate.core.runtime import Runtime
from tollgate.identity.models import Role, User

ME = "/api/v1/admin/users/me"
USERS = "/api/v1/admin/users"
ACCOUNT = "/api/mcp/account"

OTHER_SECRET = "a-different-secret-that-is-also-long-enough"


async def token_user(runtime: Runtime, **fields: Any) -> User:
    """A stored user without a password, who signs in by token only (no argon2 work)."""
    return await make_user(runtime, password="", **fields)


def sign(claims: dict[str, Any], secret: str = JWT_SECRET, algorithm: str = "HS256") -> str:
    """A JWT with exactly ``claims``."""
    return jwt.encode(claims, secret, algorithm=algorithm)


def in_minutes(minutes: int) -> datetime:
    return datetime.now(UTC) + timedelta(minutes=minutes)


def ours(user: User, **extra: Any) -> dict[str, Any]:
    """Claims shaped like the tokens Tollgate issues."""
    return {
        "email": user.email,
        "sub": str(user.id),
        "tv": user.token_version,
        "iss": "tollgate",
        "aud": "tollgate",
    } | {"exp": in_minutes(5), **extra}


def assert_unauthorized(response: httpx.Response, message: str) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["detail"]["message"] == message
    assert response.headers["www-authenticate"] == "Bearer"


async def user_count(runtime: Runtime, email: str) -> int:
    async with runtime.sessions() as session:
        query = select(func.count()).select_from(User).where(User.email == email)
        return (await session.execute(query)).scalar_one()


@pytest.mark.parametrize("path", [ME, ACCOUNT])
async def test_missing_authorization_header_is_refused(
    client: httpx.AsyncClient, path: str
) -> None:
    assert_unauthorized(await client.get(path), "Missing Authorization header")


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Token abc.def.ghi", "Bearer", "abc"])
@pytest.mark.parametrize("path", [ME, ACCOUNT])
async def test_non_bearer_authorization_header_is_refused(
    client: httpx.AsyncClient, path: str, header: str
) -> None:
    response = await client.get(path, headers={"Authorization": header})
    assert_unauthorized(response, "Invalid Authorization header format")


async def test_token_issued_by_us_names_the_user(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await token_user(runtime)
    response = await client.get(ME, headers=auth(runtime, user))
    assert response.status_code == 200, response.text
    assert response.json()["id"] == user.id


async def test_expired_token_is_refused_as_expired(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await token_user(runtime)
    token = sign(ours(user, exp=in_minutes(-5)))
    assert_unauthorized(await client.get(ME, headers=bearer(token)), "Token expired")
    foreign_expired = sign({"email": "x@other.com", "exp": in_minutes(-5)})
    assert_unauthorized(await client.get(ACCOUNT, headers=bearer(foreign_expired)), "Token expired")


async def test_token_without_expiry_is_refused(client: httpx.AsyncClient, runtime: Runtime) -> None:
    user = await token_user(runtime)
    claims = ours(user)
    del claims["exp"]
    assert_unauthorized(await client.get(ME, headers=bearer(sign(claims))), "Invalid token")
    sibling = sign({"email": "newcomer@other.com"})
    assert_unauthorized(await client.get(ME, headers=bearer(sibling)), "Invalid token")
    assert await user_count(runtime, "newcomer@other.com") == 0


async def test_token_signed_with_another_secret_is_refused(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await token_user(runtime)
    forged = sign(ours(user), secret=OTHER_SECRET)
    assert_unauthorized(await client.get(ME, headers=bearer(forged)), "Invalid token")


@pytest.mark.parametrize("algorithm", ["HS512", "none"])
async def test_token_with_another_algorithm_is_refused(
    client: httpx.AsyncClient, runtime: Runtime, algorithm: str
) -> None:
    user = await token_user(runtime)
    with warnings.catch_warnings():
        # Our secret is short for HS512; the point is the algorithm, so sign with it anyway.
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        key = "" if algorithm == "none" else JWT_SECRET
        token = jwt.encode(ours(user), key, algorithm)
    assert_unauthorized(await client.get(ME, headers=bearer(token)), "Invalid token")


async def test_garbage_token_is_refused(client: httpx.AsyncClient) -> None:
    assert_unauthorized(await client.get(ME, headers=bearer("not-a-jwt")), "Invalid token")


async def test_our_issuer_with_another_audience_is_refused(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await token_user(runtime)
    token = sign(ours(user, aud="someone-else"))
    assert_unauthorized(await client.get(ME, headers=bearer(token)), "Invalid token")
    listed = sign(ours(user, aud=["someone-else", "another"]))
    assert_unauthorized(await client.get(ME, headers=bearer(listed)), "Invalid token")


async def test_audience_list_that_includes_ours_is_accepted(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await token_user(runtime)
    token = sign(ours(user, aud=["someone-else", "tollgate"]))
    response = await client.get(ME, headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json()["id"] == user.id


async def test_foreign_issuer_is_refused(client: httpx.AsyncClient, runtime: Runtime) -> None:
    user = await token_user(runtime)
    token = sign({"email": user.email, "iss": "https://evil.example", "exp": in_minutes(5)})
    assert_unauthorized(await client.get(ME, headers=bearer(token)), "Invalid token")


async def test_token_without_email_or_sub_is_refused_as_missing_email(
    client: httpx.AsyncClient,
) -> None:
    token = sign({"name": "Nobody", "exp": in_minutes(5)})
    response = await client.get(ME, headers=bearer(token))
    assert_unauthorized(response, "Invalid token: missing email")
    subject_without_email = sign({"sub": "12345", "exp": in_minutes(5)})
    response = await client.get(ACCOUNT, headers=bearer(subject_without_email))
    assert_unauthorized(response, "Invalid token: missing email")


async def test_token_of_a_deleted_user_we_issued_is_refused(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    superuser = await token_user(runtime, is_superuser=True)
    user = await token_user(runtime)
    token = token_for(runtime, user)
    removed = await client.delete(f"{USERS}/{user.id}", headers=auth(runtime, superuser))
    assert removed.status_code == 204, removed.text
    assert_unauthorized(await client.get(ME, headers=bearer(token)), "Invalid token")
    assert await user_count(runtime, user.email) == 0


async def test_token_of_an_inactive_user_is_refused(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await token_user(runtime, active=False)
    response = await client.get(ME, headers=auth(runtime, user))
    assert response.status_code == 401
    assert response.json()["detail"]["code"] == "user_inactive"


async def test_sibling_backend_token_creates_a_plain_user_on_first_use(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    claims = {
        "email": "Newcomer@Other.COM",
        "displayName": "New Comer",
        "role": "admin",
        "is_superuser": True,
        "user_id": 1,
        "exp": in_minutes(5),
    }
    headers = bearer(sign(claims))
    response = await client.get(ME, headers=headers)
    assert response.status_code == 200, response.text
    me = response.json()
    assert me["email"] == "newcomer@other.com"
    assert me["display_name"] == "New Comer"
    assert me["role"] == Role.USER
    assert me["is_superuser"] is False
    assert me["is_active"] is True

    again = await client.get(ME, headers=headers)
    assert again.json()["id"] == me["id"]
    assert await user_count(runtime, "newcomer@other.com") == 1

    denied = await client.get(USERS, headers=headers)
    assert denied.status_code == 403
    assert denied.json()["detail"]["code"] == "permission_denied"


async def test_sibling_backend_token_names_the_user_by_sub_without_email(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    token = sign({"sub": "Carol@Other.com", "display_name": "Carol", "exp": in_minutes(5)})
    response = await client.get(ME, headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json()["email"] == "carol@other.com"
    assert response.json()["display_name"] == "Carol"
    assert await user_count(runtime, "carol@other.com") == 1


async def test_sibling_backend_token_for_an_existing_email_names_that_user(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await token_user(runtime, username="dora", email="dora@example.com")
    token = sign({"email": "DORA@example.com", "exp": in_minutes(5)})
    response = await client.get(ME, headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json()["id"] == user.id
    assert response.json()["username"] == "dora"
    assert await user_count(runtime, "dora@example.com") == 1


async def test_sibling_users_with_the_same_local_part_get_distinct_usernames(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await token_user(runtime, username="sam", email="sam@example.com")
    token = sign({"email": "sam@other.com", "exp": in_minutes(5)})
    response = await client.get(ME, headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json()["email"] == "sam@other.com"
    assert response.json()["username"].startswith("sam-")


async def test_password_change_refuses_every_token_issued_before(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    superuser = await token_user(runtime, is_superuser=True)
    user = await token_user(runtime)
    before = token_for(runtime, user)
    ok = await client.get(ME, headers=bearer(before))
    assert ok.status_code == 200, ok.text

    changed = await client.put(
        f"{USERS}/{user.id}",
        json={"password": "a-brand-new-password"},
        headers=auth(runtime, superuser),
    )

    assert changed.status_code == 200, changed.text
    refused = await client.get(ME, headers=bearer(before))
    assert_unauthorized(refused, "Token revoked")
    assert refused.json()["detail"]["code"] == "token_revoked"
    async with runtime.sessions() as session:
        fresh = await session.get(User, user.id)
        assert fresh is not None
    assert (await client.get(ME, headers=auth(runtime, fresh))).status_code == 200


async def test_deactivation_refuses_old_tokens_even_after_reactivation(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    superuser = await token_user(runtime, is_superuser=True)
    user = await token_user(runtime)
    before = token_for(runtime, user)
    admin_headers = auth(runtime, superuser)

    for active in (False, True):
        answer = await client.put(
            f"{USERS}/{user.id}", json={"is_active": active}, headers=admin_headers
        )
        assert answer.status_code == 200, answer.text

    assert_unauthorized(await client.get(ME, headers=bearer(before)), "Token revoked")


async def test_our_token_is_bound_to_the_user_id_not_the_email(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    superuser = await token_user(runtime, is_superuser=True)
    user = await token_user(runtime)
    token = token_for(runtime, user)

    moved = await client.put(
        f"{USERS}/{user.id}", json={"email": "moved@example.com"}, headers=auth(runtime, superuser)
    )

    assert moved.status_code == 200, moved.text
    response = await client.get(ME, headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json()["id"] == user.id


@pytest.mark.parametrize(
    "change",
    [
        {"sub": None, "tv": None},
        {"tv": None},
        {"tv": "1"},
        {"tv": True},
        {"sub": "not-an-id"},
        {"sub": "99999999"},
    ],
)
async def test_our_token_without_user_id_or_token_version_is_refused(
    client: httpx.AsyncClient, runtime: Runtime, change: dict[str, Any]
) -> None:
    user = await token_user(runtime)
    claims = ours(user)
    for name, value in change.items():
        if value is None:
            del claims[name]
        else:
            claims[name] = value
    if "sub" not in claims:
        claims["sub"] = user.email
    assert_unauthorized(await client.get(ME, headers=bearer(sign(claims))), "Invalid token")
