"""Access tokens for MCP servers: seed 001's authentication rules, usage tracking and audit."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, update

from tests.broker.factories import (
    LEASES,
    ME,
    TOKENS,
    access_token,
    assert_error,
    moment,
    ok,
    person,
    personal_integration,
    todoist,
)
from tests.conftest import auth, bearer, enable_account
from tollgate.broker import audit, tokens
from tollgate.broker.models import AuditLog
from tollgate.core.crypto import hash_token, new_token
from tollgate.core.database import transaction
from tollgate.core.errors import BadRequest
from tollgate.core.runtime import Runtime
from tollgate.identity.models import AccessToken, User


def assert_unauthenticated(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["detail"]["message"] == "Unauthenticated."
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def token_row(runtime: Runtime, token_id: int) -> AccessToken:
    async with runtime.sessions() as session:
        row = await session.get(AccessToken, token_id)
        assert row is not None
        return row


async def audit_rows(runtime: Runtime, action: str) -> list[AuditLog]:
    async with runtime.sessions() as session:
        query = select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)
        return list((await session.execute(query)).scalars())


async def issue(runtime: Runtime, user: User, expires_at: datetime | None) -> str:
    async with transaction(runtime.sessions) as session:
        issued = await tokens.issue(
            session,
            user,
            name="direct",
            scopes=["lease"],
            expires_at=expires_at,
            actor=audit.Actor(user_id=user.id),
        )
    return issued.full


async def test_a_valid_token_authenticates_its_user(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime, "server")
    created = await access_token(client, auth(runtime, user))

    assert created["token"].startswith("mcpt_")
    assert created["token_prefix"] == created["token"][:12]
    assert created["scopes"] == ["lease"]
    body = ok(await client.get(ME, headers=bearer(created["token"])))
    assert body["user_id"] == user.id
    assert body["email"] == user.email


async def test_an_unknown_token_is_refused_as_unauthenticated(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime)
    real = (await access_token(client, auth(runtime, user)))["token"]

    assert_unauthenticated(await client.get(ME, headers=bearer("mcp_" + "x" * 40)))
    assert_unauthenticated(await client.get(ME, headers=bearer(real[:-1] + "!")))
    assert_unauthenticated(
        await client.post(LEASES, json={"services": ["todoist"]}, headers=bearer("mcp_nope"))
    )
    missing = await client.get(ME)
    assert_error(missing, 401, "missing_authorization")


async def test_an_expired_token_is_refused(client: httpx.AsyncClient, runtime: Runtime) -> None:
    user = await person(runtime)
    expired = await issue(runtime, user, datetime.now(UTC) - timedelta(seconds=1))
    fresh = await issue(runtime, user, datetime.now(UTC) + timedelta(hours=1))

    assert_unauthenticated(await client.get(ME, headers=bearer(expired)))
    ok(await client.get(ME, headers=bearer(fresh)))
    reasons = [row.details["reason"] for row in await audit_rows(runtime, "mcp_auth_failed")]
    assert reasons == ["expired_token"]


async def test_a_revoked_token_is_refused(client: httpx.AsyncClient, runtime: Runtime) -> None:
    user = await person(runtime)
    headers = auth(runtime, user)
    created = await access_token(client, headers)
    ok(await client.get(ME, headers=bearer(created["token"])))

    revoked = ok(await client.delete(f"{TOKENS}/{created['id']}", headers=headers))

    assert revoked["is_active"] is False
    assert revoked["revoked_at"] is not None
    assert_unauthenticated(await client.get(ME, headers=bearer(created["token"])))
    again = ok(await client.delete(f"{TOKENS}/{created['id']}", headers=headers))
    assert again["revoked_at"] == revoked["revoked_at"]


async def test_someone_elses_token_cannot_be_revoked(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await person(runtime, "owner")
    other = await person(runtime, "other")
    created = await access_token(client, auth(runtime, owner))

    refused = await client.delete(f"{TOKENS}/{created['id']}", headers=auth(runtime, other))

    assert_error(refused, 404, "token_not_found")
    ok(await client.get(ME, headers=bearer(created["token"])))


async def test_a_token_of_an_inactive_user_is_refused(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime)
    created = await access_token(client, auth(runtime, user))
    ok(await client.get(ME, headers=bearer(created["token"])))

    async with transaction(runtime.sessions) as session:
        await session.execute(update(User).where(User.id == user.id).values(is_active=False))

    assert_unauthenticated(await client.get(ME, headers=bearer(created["token"])))
    reasons = [row.details["reason"] for row in await audit_rows(runtime, "mcp_auth_failed")]
    assert reasons == ["inactive_user"]


async def test_use_is_tracked_at_most_once_a_minute(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime)
    created = await access_token(client, auth(runtime, user))
    assert (await token_row(runtime, created["id"])).last_used_at is None

    before = datetime.now(UTC) - timedelta(seconds=1)
    ok(await client.get(ME, headers=bearer(created["token"])))
    first = (await token_row(runtime, created["id"])).last_used_at
    assert first is not None
    assert before <= first <= datetime.now(UTC) + timedelta(seconds=1)

    long_ago = datetime(2000, 1, 1, tzinfo=UTC)
    async with transaction(runtime.sessions) as session:
        await session.execute(
            update(AccessToken).where(AccessToken.id == created["id"]).values(last_used_at=long_ago)
        )
    ok(await client.get(ME, headers=bearer(created["token"])))
    ok(await client.get(ME, headers=bearer(created["token"])))

    assert (await token_row(runtime, created["id"])).last_used_at == long_ago
    listed = ok(await client.get(TOKENS, headers=auth(runtime, user)))
    assert moment(listed[0]["last_used_at"]) == long_ago


async def test_each_token_tracks_its_own_use(client: httpx.AsyncClient, runtime: Runtime) -> None:
    user = await person(runtime)
    first = await access_token(client, auth(runtime, user))
    second = await access_token(client, auth(runtime, user))

    ok(await client.get(ME, headers=bearer(first["token"])))
    ok(await client.get(ME, headers=bearer(second["token"])))

    assert (await token_row(runtime, first["id"])).last_used_at is not None
    assert (await token_row(runtime, second["id"])).last_used_at is not None


async def test_authentication_success_and_failure_are_audited_with_the_prefix_only(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime)
    created = await access_token(client, auth(runtime, user))
    wrong = created["token"][:12] + "A" * 40

    ok(await client.get(ME, headers=bearer(created["token"])))
    assert_unauthenticated(await client.get(ME, headers=bearer(wrong)))

    [success] = await audit_rows(runtime, "mcp_auth_success")
    assert success.actor_user_id == user.id
    assert success.actor_token_prefix == created["token_prefix"]
    assert success.target_type == "user"
    assert success.target_id == str(user.id)
    assert success.client_address == "127.0.0.1"
    [failed] = await audit_rows(runtime, "mcp_auth_failed")
    assert failed.actor_user_id is None
    assert failed.actor_token_prefix == wrong[:12]
    assert failed.client_address == "127.0.0.1"
    assert failed.details == {"reason": "unknown_token"}
    async with runtime.sessions() as session:
        every_row = json.dumps(
            [
                {c.name: getattr(r, c.name) for c in AuditLog.__table__.columns}
                for r in (await session.execute(select(AuditLog))).scalars()
            ],
            default=str,
        )
    assert created["token"] not in every_row
    assert wrong not in every_row
    assert wrong[12:] not in every_row


async def test_token_list_shows_prefix_and_times_but_never_the_token(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime)
    headers = auth(runtime, user)
    first = await access_token(client, headers)
    created = ok(
        await client.post(
            TOKENS,
            json={"name": "never", "expires_in_days": None, "scopes": ["read"]},
            headers=headers,
        ),
        201,
    )
    ok(await client.get(ME, headers=bearer(first["token"])))

    response = await client.get(TOKENS, headers=headers)
    listed = ok(response)

    assert [t["id"] for t in listed] == [created["id"], first["id"]]
    for entry in listed:
        assert "token" not in entry
        assert set(entry) >= {"token_prefix", "created_at", "expires_at", "last_used_at"}
    assert first["token"] not in response.text
    assert created["token"] not in response.text
    newest, oldest = listed
    assert newest["token_prefix"] == created["token"][:12]
    assert newest["expires_at"] is None
    assert newest["last_used_at"] is None
    assert newest["scopes"] == ["read"]
    lifetime = moment(oldest["expires_at"]) - moment(oldest["created_at"])
    assert abs(lifetime - timedelta(days=90)) < timedelta(minutes=1)
    assert oldest["last_used_at"] is not None
    other = await person(runtime, "other")
    assert ok(await client.get(TOKENS, headers=auth(runtime, other))) == []


async def test_only_the_hash_of_a_token_is_stored(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime)
    created = await access_token(client, auth(runtime, user))

    row = await token_row(runtime, created["id"])

    assert row.token_prefix == created["token"][:12]
    assert row.token_hash != created["token"]
    assert created["token"] not in json.dumps(
        {c.name: getattr(row, c.name) for c in AccessToken.__table__.columns}, default=str
    )


async def test_a_read_token_may_ask_who_it_is_but_not_lease(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime)
    headers = auth(runtime, user)
    await personal_integration(client, headers, "todoist", todoist())
    reader = await access_token(client, headers, ["read"])

    ok(await client.get(ME, headers=bearer(reader["token"])))
    refused = await client.post(
        LEASES, json={"services": ["todoist"]}, headers=bearer(reader["token"])
    )

    assert_error(refused, 403, "insufficient_scope")
    leaser = await access_token(client, headers, ["lease"])
    lease = ok(
        await client.post(LEASES, json={"services": ["todoist"]}, headers=bearer(leaser["token"])),
        201,
    )
    ok(await client.get(f"{LEASES}/{lease['lease_id']}", headers=bearer(reader["token"])))
    assert_error(
        await client.post(f"{LEASES}/{lease['lease_id']}/renew", headers=bearer(reader["token"])),
        403,
        "insufficient_scope",
    )
    assert_error(
        await client.delete(f"{LEASES}/{lease['lease_id']}", headers=bearer(reader["token"])),
        403,
        "insufficient_scope",
    )


async def test_an_unknown_scope_is_refused(client: httpx.AsyncClient, runtime: Runtime) -> None:
    user = await person(runtime)

    response = await client.post(
        TOKENS, json={"name": "x", "scopes": ["lease", "admin"]}, headers=auth(runtime, user)
    )

    assert_error(response, 422, "validation_error")
    assert ok(await client.get(TOKENS, headers=auth(runtime, user))) == []


async def test_the_token_service_refuses_unknown_scopes(runtime: Runtime) -> None:
    user = await person(runtime)

    with pytest.raises(BadRequest) as refused:
        async with transaction(runtime.sessions) as session:
            await tokens.issue(
                session,
                user,
                name="cli",
                scopes=["lease", "everything"],
                expires_at=None,
                actor=audit.Actor(user_id=user.id),
            )

    assert refused.value.code == "unknown_scope"
    async with runtime.sessions() as session:
        assert (await session.execute(select(AccessToken))).first() is None


async def test_an_access_token_cannot_manage_tokens(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime)
    created = await access_token(client, auth(runtime, user))

    response = await client.post(TOKENS, json={"name": "x"}, headers=bearer(created["token"]))

    assert response.status_code == 401, response.text


async def test_token_creation_and_revocation_are_audited(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime)
    headers = auth(runtime, user)
    created = await access_token(client, headers)
    ok(await client.delete(f"{TOKENS}/{created['id']}", headers=headers))
    ok(await client.delete(f"{TOKENS}/{created['id']}", headers=headers))

    [made] = await audit_rows(runtime, "token_created")
    [revoked] = await audit_rows(runtime, "token_revoked")
    for row in (made, revoked):
        assert row.actor_user_id == user.id
        assert row.target_type == "access_token"
        assert row.target_id == str(created["id"])
        assert row.details["prefix"] == created["token_prefix"]


UNAUTHENTICATED_FLOOD = 50
"""Enough refused requests that one row each would flood the trail."""


async def test_a_flood_of_unauthenticated_requests_does_not_flood_the_audit_log(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    for n in range(UNAUTHENTICATED_FLOOD):
        assert_unauthenticated(await client.get(ME, headers=bearer(f"mcp_{n:040d}")))
    for _ in range(3):
        assert_error(await client.get(ME), 401, "missing_authorization")
        assert_error(await client.get(ME, headers=bearer("not-a-jwt")), 401, "invalid_token")

    async with runtime.sessions() as session:
        every_row = (await session.execute(select(AuditLog))).scalars().all()
    assert [(r.action, r.details) for r in every_row] == [
        ("mcp_auth_failed", {"reason": "unknown_token"})
    ]


async def legacy_token(runtime: Runtime, user: User, scopes: list[str] | None = None) -> str:
    """An access token as issued before ``mcpt_``: ``mcp_...``, stored by hash."""
    full = new_token("mcp_", 40)
    async with transaction(runtime.sessions) as session:
        session.add(
            AccessToken(
                user_id=user.id,
                name="from before mcpt_",
                token_hash=hash_token(full),
                token_prefix=full[:12],
                scopes=scopes or ["lease"],
                is_active=True,
            )
        )
    return full


async def test_new_access_tokens_have_their_own_prefix_not_the_account_keys(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime)
    headers = auth(runtime, user)
    token = (await access_token(client, headers))["token"]
    key = (await enable_account(client, headers))["mcp_api_key"]

    assert token.startswith("mcpt_")
    assert key.startswith("mcp_")
    assert not key.startswith("mcpt_")
    assert ok(await client.get(ME, headers=bearer(token)))["user_id"] == user.id


async def test_an_access_token_issued_before_mcpt_keeps_working(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime)
    old = await legacy_token(runtime, user)

    body = ok(await client.get(ME, headers=bearer(old)))
    listed = ok(await client.get(TOKENS, headers=auth(runtime, user)))

    assert body["user_id"] == user.id
    assert [t["token_prefix"] for t in listed] == [old[:12]]


async def test_an_account_key_on_the_broker_is_refused_naming_both_kinds(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime)
    key = (await enable_account(client, auth(runtime, user)))["mcp_api_key"]

    refused = await client.get(ME, headers=bearer(key))

    assert_error(refused, 401, "invalid_token")
    message = refused.json()["detail"]["message"]
    assert "an account key (mcp_...)" in message
    assert "an access token (mcpt_...)" in message
    assert key not in message
