"""Seed 000's MCP account routes: enable, the key, regeneration, usage history and summary."""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from tests.conftest import auth, bearer, enable_account, make_user, require_redis
from tollgate.accounts import calls, service
from tollgate.accounts.deps import key_store
from tollgate.accounts.models import CreditTransaction, McpAccount, ToolCall
from tollgate.app import create_app
from tollgate.core.clock import start_of_day, start_of_month
from tollgate.core.crypto import hash_token, new_token
from tollgate.core.database import database_now, transaction
from tollgate.core.runtime import Runtime
from tollgate.core.settings import Settings
from tollgate.identity.models import AccessToken, User

NOT_ENABLED_MESSAGE = "MCP is not enabled for your account. Click 'Enable MCP' to get started."
"""Seed 000's exact text for a user without an account."""

KEY_SHAPE = re.compile(r"^mcp_[A-Za-z0-9_-]{32}$")
"""``mcp_`` + 32 URL-safe characters."""

REQUEST_TIMEOUT = 30.0
"""Upper bound for a burst of concurrent requests on a loaded machine."""

USAGE_ROUTES = ("/api/mcp/account", "/api/mcp/usage", "/api/mcp/usage/summary")


async def _user(runtime: Runtime, **fields: Any) -> User:
    """A user who signs in by JWT only: no password, so no argon2 hash to wait for."""
    return await make_user(runtime, password="", **fields)


async def _enabled_user(
    runtime: Runtime, client: httpx.AsyncClient
) -> tuple[dict[str, str], dict[str, Any]]:
    """A new user with MCP enabled: their JWT header and the enable response."""
    headers = auth(runtime, await _user(runtime))
    return headers, await enable_account(client, headers)


async def _record_call(
    runtime: Runtime,
    account_id: int,
    *,
    tool: str = "search__query",
    cost: int = 1,
    success: bool = True,
    backend_error: bool = False,
    latency_ms: float | None = 10.0,
    created_at: datetime | None = None,
) -> str:
    """A tool call reserved and settled through the real service functions."""
    request_id = uuid.uuid4().hex
    async with transaction(runtime.sessions) as session:
        await calls.reserve_call(
            session, account_id, request_id=request_id, tool_name=tool, upstream="up", cost=cost
        )
    async with transaction(runtime.sessions) as session:
        settled = await calls.settle_call(
            session,
            calls.CallOutcome(
                request_id=request_id,
                success=success,
                is_backend_error=backend_error,
                error_code="upstream_failed" if backend_error else None,
                latency_ms=latency_ms,
            ),
        )
        assert settled
        if created_at is not None:
            await session.execute(
                update(ToolCall)
                .where(ToolCall.request_id == request_id)
                .values(created_at=created_at)
            )
    return request_id


def _days_until_first_of_next_month(today: date) -> int:
    """Counted independently of the code under test."""
    following = date(today.year + today.month // 12, today.month % 12 + 1, 1)
    return (following - today).days


async def _database_now(runtime: Runtime) -> datetime:
    async with runtime.sessions() as session:
        return await database_now(session)


@asynccontextmanager
async def _other_process(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A second app on the same database and cache, as another worker process would be."""
    other = create_app(settings, configure_logs=False)
    async with other.router.lifespan_context(other):
        transport = httpx.ASGITransport(app=other, client=("127.0.0.1", 50001))
        async with httpx.AsyncClient(transport=transport, base_url="http://other") as http:
            yield http


async def test_account_is_not_found_with_seed_message_before_mcp_is_enabled(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    headers = auth(runtime, await _user(runtime))
    response = await client.get("/api/mcp/account", headers=headers)
    assert response.status_code == 404
    assert response.json()["detail"] == {"code": "mcp_not_enabled", "message": NOT_ENABLED_MESSAGE}


async def test_usage_routes_are_not_found_before_mcp_is_enabled(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    headers = auth(runtime, await _user(runtime))
    for path in ("/api/mcp/usage", "/api/mcp/usage/summary"):
        response = await client.get(path, headers=headers)
        assert response.status_code == 404, path
        assert response.json()["detail"]["code"] == "mcp_not_enabled"
    response = await client.post("/api/mcp/regenerate-key", headers=headers)
    assert response.status_code == 404
    assert response.json()["detail"]["code"] == "mcp_not_enabled"


async def test_enable_returns_the_key_once_and_a_free_tier_account(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    user = await _user(runtime)
    body = await enable_account(client, auth(runtime, user))
    key = body["mcp_api_key"]
    assert KEY_SHAPE.match(key), key
    assert body["success"] is True
    account = body["account"]
    assert account["user_email"] == user.email
    assert account["mcp_key_prefix"] == key[:12]
    assert account["credits_balance"] == 50
    assert account["credits_tier"] == "free"
    assert account["credits_monthly_allocation"] == 50
    assert account["is_active"] is True
    assert account["total_tool_calls"] == 0
    assert account["total_credits_used"] == 0
    assert account["stripe_subscription_status"] is None
    assert key not in str(account)

    shown = await client.get("/api/mcp/account", headers=auth(runtime, user))
    assert shown.status_code == 200
    assert shown.json() == account


async def test_database_stores_only_the_sha256_hash_of_the_key(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    _, body = await _enabled_user(runtime, client)
    key = body["mcp_api_key"]
    async with runtime.sessions() as session:
        row = (
            await session.execute(
                select(McpAccount.__table__).where(McpAccount.id == body["account"]["id"])
            )
        ).one()
        ledger = (
            await session.execute(
                select(CreditTransaction.__table__).where(
                    CreditTransaction.account_id == body["account"]["id"]
                )
            )
        ).all()
    values = row._asdict()
    assert values["mcp_key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert values["mcp_key_prefix"] == key[:12]
    assert not any(key in str(value) for value in values.values())
    assert not any(key in str(value) for entry in ledger for value in entry)


async def test_enable_writes_the_first_allocation_to_the_ledger(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    _, body = await _enabled_user(runtime, client)
    async with runtime.sessions() as session:
        entries = (
            (
                await session.execute(
                    select(CreditTransaction).where(
                        CreditTransaction.account_id == body["account"]["id"]
                    )
                )
            )
            .scalars()
            .all()
        )
    assert [(e.transaction_type, e.amount, e.balance_before, e.balance_after) for e in entries] == [
        ("monthly_refill", 50, 0, 50)
    ]


async def test_enabling_twice_is_refused_with_already_enabled(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    headers, first = await _enabled_user(runtime, client)
    response = await client.post("/api/mcp/enable", headers=headers)
    assert response.status_code == 400
    assert response.json()["detail"]["code"] == "already_enabled"
    account = await client.get("/api/mcp/account", headers=bearer(first["mcp_api_key"]))
    assert account.json()["mcp_key_prefix"] == first["account"]["mcp_key_prefix"]


async def test_concurrent_enables_of_one_user_create_one_account(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    headers = auth(runtime, await _user(runtime))
    async with asyncio.timeout(REQUEST_TIMEOUT):
        responses = await asyncio.gather(
            *(client.post("/api/mcp/enable", headers=headers) for _ in range(4))
        )
    assert sorted(r.status_code for r in responses) == [200, 400, 400, 400]
    assert {r.json()["detail"]["code"] for r in responses if r.status_code == 400} == {
        "already_enabled"
    }
    [winner] = [r.json() for r in responses if r.status_code == 200]
    account = await client.get("/api/mcp/account", headers=bearer(winner["mcp_api_key"]))
    assert account.status_code == 200
    async with runtime.sessions() as session:
        accounts = (await session.execute(select(McpAccount.id))).scalars().all()
        ledger = (await session.execute(select(CreditTransaction.id))).scalars().all()
    assert accounts == [winner["account"]["id"]]
    assert len(ledger) == 1


async def test_key_works_as_bearer_on_account_and_usage_routes(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    _, body = await _enabled_user(runtime, client)
    for path in USAGE_ROUTES:
        response = await client.get(path, headers=bearer(body["mcp_api_key"]))
        assert response.status_code == 200, (path, response.text)
    account = await client.get("/api/mcp/account", headers=bearer(body["mcp_api_key"]))
    assert account.json()["id"] == body["account"]["id"]


async def test_unknown_key_and_missing_header_are_refused(client: httpx.AsyncClient) -> None:
    unknown = await client.get("/api/mcp/account", headers=bearer("mcp_" + "x" * 32))
    assert unknown.status_code == 401
    assert unknown.json()["detail"]["code"] == "invalid_key"
    missing = await client.get("/api/mcp/account")
    assert missing.status_code == 401
    assert missing.json()["detail"]["code"] == "missing_authorization"


@pytest.mark.parametrize("old_key_cached", [True, False], ids=["cached", "uncached"])
async def test_regenerated_key_replaces_the_old_key_at_once(
    runtime: Runtime, client: httpx.AsyncClient, old_key_cached: bool
) -> None:
    headers, body = await _enabled_user(runtime, client)
    old_key = body["mcp_api_key"]
    if old_key_cached:
        assert (await client.get("/api/mcp/account", headers=bearer(old_key))).status_code == 200

    response = await client.post("/api/mcp/regenerate-key", headers=headers)
    assert response.status_code == 200
    regenerated = response.json()
    new_key = regenerated["mcp_api_key"]
    assert regenerated["success"] is True
    assert KEY_SHAPE.match(new_key)
    assert new_key != old_key
    assert regenerated["mcp_key_prefix"] == new_key[:12]

    for path in USAGE_ROUTES:
        refused = await client.get(path, headers=bearer(old_key))
        assert refused.status_code == 401, path
        assert refused.json()["detail"]["code"] == "invalid_key"
        assert (await client.get(path, headers=bearer(new_key))).status_code == 200, path
    account = await client.get("/api/mcp/account", headers=headers)
    assert account.json()["mcp_key_prefix"] == new_key[:12]
    async with runtime.sessions() as session:
        stored = await session.get(McpAccount, body["account"]["id"])
        assert stored is not None
        assert stored.mcp_key_hash == hashlib.sha256(new_key.encode()).hexdigest()


async def test_regenerated_key_is_refused_by_other_process(
    settings: Settings, runtime: Runtime, client: httpx.AsyncClient
) -> None:
    require_redis()
    headers, body = await _enabled_user(runtime, client)
    old_key = body["mcp_api_key"]
    async with _other_process(settings) as other:
        assert (await other.get("/api/mcp/account", headers=bearer(old_key))).status_code == 200
        response = await client.post("/api/mcp/regenerate-key", headers=headers)
        assert response.status_code == 200
        refused = await other.get("/api/mcp/account", headers=bearer(old_key))
        assert refused.status_code == 401
        assert refused.json()["detail"]["code"] == "invalid_key"
        new_key = response.json()["mcp_api_key"]
        assert (await other.get("/api/mcp/account", headers=bearer(new_key))).status_code == 200


async def test_enable_and_regenerate_refuse_an_account_key(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    _, body = await _enabled_user(runtime, client)
    key = body["mcp_api_key"]
    for path in ("/api/mcp/enable", "/api/mcp/regenerate-key"):
        response = await client.post(path, headers=bearer(key))
        assert response.status_code == 401, path
        assert response.json()["detail"]["code"] == "invalid_token"
    assert (await client.get("/api/mcp/account", headers=bearer(key))).status_code == 200


@pytest.mark.parametrize("key_cached", [True, False], ids=["cached", "uncached"])
async def test_disabled_account_key_is_refused(
    runtime: Runtime, client: httpx.AsyncClient, key_cached: bool
) -> None:
    _, body = await _enabled_user(runtime, client)
    key = body["mcp_api_key"]
    if key_cached:
        assert (await client.get("/api/mcp/usage", headers=bearer(key))).status_code == 200
    async with transaction(runtime.sessions) as session:
        account = await service.get_account(session, body["account"]["id"])
        await service.set_account_active(session, account, False, key_store(runtime))
    for path in USAGE_ROUTES:
        response = await client.get(path, headers=bearer(key))
        assert response.status_code == 401, path
        assert response.json()["detail"]["code"] == "invalid_key"

    async with transaction(runtime.sessions) as session:
        account = await service.get_account(session, body["account"]["id"])
        await service.set_account_active(session, account, True, key_store(runtime))
    assert (await client.get("/api/mcp/usage", headers=bearer(key))).status_code == 200


async def test_account_disabled_in_the_database_refuses_its_uncached_key(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    _, body = await _enabled_user(runtime, client)
    async with transaction(runtime.sessions) as session:
        await session.execute(
            update(McpAccount).where(McpAccount.id == body["account"]["id"]).values(is_active=False)
        )
    response = await client.get("/api/mcp/account", headers=bearer(body["mcp_api_key"]))
    assert response.status_code == 401


OUT_OF_BOUNDS = (
    {"days": 0},
    {"days": 91},
    {"limit": 0},
    {"limit": 501},
    {"offset": -1},
    {"days": "week"},
)
AT_BOUNDS = ({"days": 1}, {"days": 90}, {"limit": 1}, {"limit": 500}, {"offset": 0})


async def test_usage_refuses_query_values_outside_bounds(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    _, body = await _enabled_user(runtime, client)
    for query in OUT_OF_BOUNDS:
        response = await client.get(
            "/api/mcp/usage", params=query, headers=bearer(body["mcp_api_key"])
        )
        assert response.status_code == 422, query
        assert response.json()["detail"]["code"] == "validation_error"


async def test_usage_accepts_query_values_at_bounds(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    _, body = await _enabled_user(runtime, client)
    for query in AT_BOUNDS:
        response = await client.get(
            "/api/mcp/usage", params=query, headers=bearer(body["mcp_api_key"])
        )
        assert response.status_code == 200, query
        assert response.json()["period_days"] == query.get("days", 7)


async def test_usage_lists_only_the_callers_calls_newest_first(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    headers, mine = await _enabled_user(runtime, client)
    _, theirs = await _enabled_user(runtime, client)
    first = await _record_call(runtime, mine["account"]["id"], tool="a__one", cost=2)
    await _record_call(runtime, theirs["account"]["id"], tool="a__other")
    second = await _record_call(runtime, mine["account"]["id"], tool="a__two", cost=3)

    response = await client.get("/api/mcp/usage", headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert body["total_calls"] == 2
    assert body["period_days"] == 7
    assert [c["request_id"] for c in body["tool_calls"]] == [second, first]
    newest = body["tool_calls"][0]
    assert newest["tool_name"] == "a__two"
    assert newest["credits_cost"] == 3
    assert newest["credits_charged"] == 3
    assert newest["success"] is True
    assert newest["is_backend_error"] is False
    assert newest["latency_ms"] == 10.0
    assert set(newest) == {
        "request_id",
        "tool_name",
        "credits_cost",
        "credits_charged",
        "success",
        "is_backend_error",
        "error_code",
        "latency_ms",
        "created_at",
    }


async def test_usage_filters_by_tool_name_and_success(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    _, body = await _enabled_user(runtime, client)
    account_id, key = body["account"]["id"], body["mcp_api_key"]
    ok_alpha = await _record_call(runtime, account_id, tool="x__alpha")
    failed_alpha = await _record_call(runtime, account_id, tool="x__alpha", success=False)
    ok_beta = await _record_call(runtime, account_id, tool="x__beta")

    async def listed(**params: Any) -> set[str]:
        response = await client.get("/api/mcp/usage", params=params, headers=bearer(key))
        assert response.status_code == 200
        page = response.json()
        assert page["total_calls"] == len(page["tool_calls"])
        return {c["request_id"] for c in page["tool_calls"]}

    assert await listed() == {ok_alpha, failed_alpha, ok_beta}
    assert await listed(tool_name="x__alpha") == {ok_alpha, failed_alpha}
    assert await listed(success_only="true") == {ok_alpha, ok_beta}
    assert await listed(tool_name="x__alpha", success_only="true") == {ok_alpha}
    assert await listed(tool_name="x__none") == set()


async def test_usage_pages_with_limit_and_offset(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    _, body = await _enabled_user(runtime, client)
    made = [await _record_call(runtime, body["account"]["id"]) for _ in range(5)]
    newest_first = list(reversed(made))
    pages = []
    for offset in (0, 2, 4):
        response = await client.get(
            "/api/mcp/usage",
            params={"limit": 2, "offset": offset},
            headers=bearer(body["mcp_api_key"]),
        )
        page = response.json()
        assert page["total_calls"] == 5
        pages.append([c["request_id"] for c in page["tool_calls"]])
    assert pages == [newest_first[0:2], newest_first[2:4], newest_first[4:]]
    beyond = await client.get(
        "/api/mcp/usage", params={"offset": 5}, headers=bearer(body["mcp_api_key"])
    )
    assert beyond.json()["tool_calls"] == []
    assert beyond.json()["total_calls"] == 5


async def test_usage_days_window_leaves_out_older_calls(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    _, body = await _enabled_user(runtime, client)
    now = await _database_now(runtime)
    recent = await _record_call(runtime, body["account"]["id"])
    old = await _record_call(runtime, body["account"]["id"], created_at=now - timedelta(days=10))

    async def listed(days: int) -> list[str]:
        response = await client.get(
            "/api/mcp/usage", params={"days": days}, headers=bearer(body["mcp_api_key"])
        )
        return [c["request_id"] for c in response.json()["tool_calls"]]

    assert await listed(7) == [recent]
    assert await listed(9) == [recent]
    assert await listed(11) == [recent, old]


async def test_usage_summary_without_calls_reports_full_success_rate(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    _, body = await _enabled_user(runtime, client)
    response = await client.get("/api/mcp/usage/summary", headers=bearer(body["mcp_api_key"]))
    assert response.status_code == 200
    summary = response.json()
    today = datetime.now(UTC).date()
    assert summary == {
        "credits_balance": 50,
        "credits_tier": "free",
        "credits_monthly_allocation": 50,
        "credits_used_today": 0,
        "credits_used_this_month": 0,
        "total_calls_today": 0,
        "total_calls_this_month": 0,
        "success_rate": 100.0,
        "avg_latency_ms": 0.0,
        "tool_breakdown": [],
        "days_until_refill": _days_until_first_of_next_month(today),
    }


async def test_usage_summary_counts_today_this_month_and_tools(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    headers, body = await _enabled_user(runtime, client)
    _, other = await _enabled_user(runtime, client)
    account_id = body["account"]["id"]
    now = await _database_now(runtime)
    month_start = start_of_month(now)
    earlier_this_month = month_start if month_start < start_of_day(now) else None

    await _record_call(
        runtime, account_id, tool="t__alpha", cost=3, latency_ms=10.0, created_at=earlier_this_month
    )
    await _record_call(runtime, account_id, tool="t__alpha", cost=3, success=False, latency_ms=20)
    await _record_call(
        runtime, account_id, tool="t__beta", cost=2, success=False, backend_error=True, latency_ms=5
    )
    await _record_call(
        runtime, account_id, tool="t__gamma", cost=7, created_at=month_start - timedelta(days=1)
    )
    await _record_call(runtime, other["account"]["id"], tool="t__alpha", cost=9)

    response = await client.get("/api/mcp/usage/summary", headers=headers)
    assert response.status_code == 200
    summary = response.json()
    today_calls, today_credits = (2, 3) if earlier_this_month else (3, 6)
    assert summary["credits_used_today"] == today_credits
    assert summary["total_calls_today"] == today_calls
    assert summary["credits_used_this_month"] == 6
    assert summary["total_calls_this_month"] == 3
    assert summary["success_rate"] == 33.3
    assert summary["avg_latency_ms"] == 11.7
    assert summary["tool_breakdown"] == [
        {"tool": "t__alpha", "calls": 2, "credits": 6},
        {"tool": "t__beta", "calls": 1, "credits": 0},
    ]
    assert summary["credits_balance"] == 50 - 3 - 3 - 7
    assert summary["days_until_refill"] == _days_until_first_of_next_month(now.date())


async def _superuser_headers(runtime: Runtime) -> dict[str, str]:
    return auth(runtime, await _user(runtime, is_superuser=True))


async def test_deactivated_users_cached_key_is_refused_at_once(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    headers, body = await _enabled_user(runtime, client)
    key = body["mcp_api_key"]
    user_id = (await client.get("/api/v1/admin/users/me", headers=headers)).json()["id"]
    admin_headers = await _superuser_headers(runtime)
    assert (await client.get("/api/mcp/account", headers=bearer(key))).status_code == 200

    off = await client.put(
        f"/api/v1/admin/users/{user_id}", json={"is_active": False}, headers=admin_headers
    )

    assert off.status_code == 200, off.text
    for path in USAGE_ROUTES:
        refused = await client.get(path, headers=bearer(key))
        assert refused.status_code == 401, path
        assert refused.json()["detail"]["code"] == "invalid_key"
    on = await client.put(
        f"/api/v1/admin/users/{user_id}", json={"is_active": True}, headers=admin_headers
    )
    assert on.status_code == 200, on.text
    assert (await client.get("/api/mcp/account", headers=bearer(key))).status_code == 200


async def test_deleted_users_cached_key_is_refused_at_once(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    headers, body = await _enabled_user(runtime, client)
    key = body["mcp_api_key"]
    user_id = (await client.get("/api/v1/admin/users/me", headers=headers)).json()["id"]
    assert (await client.get("/api/mcp/account", headers=bearer(key))).status_code == 200

    deleted = await client.delete(
        f"/api/v1/admin/users/{user_id}", headers=await _superuser_headers(runtime)
    )

    assert deleted.status_code == 204, deleted.text
    refused = await client.get("/api/mcp/usage", headers=bearer(key))
    assert refused.status_code == 401
    assert refused.json()["detail"]["code"] == "invalid_key"


async def test_deactivated_users_key_is_refused_by_other_process(
    settings: Settings, runtime: Runtime, client: httpx.AsyncClient
) -> None:
    require_redis()
    headers, body = await _enabled_user(runtime, client)
    key = body["mcp_api_key"]
    user_id = (await client.get("/api/v1/admin/users/me", headers=headers)).json()["id"]
    admin_headers = await _superuser_headers(runtime)
    async with _other_process(settings) as other:
        assert (await other.get("/api/mcp/account", headers=bearer(key))).status_code == 200
        off = await client.put(
            f"/api/v1/admin/users/{user_id}", json={"is_active": False}, headers=admin_headers
        )
        assert off.status_code == 200, off.text
        refused = await other.get("/api/mcp/account", headers=bearer(key))
        assert refused.status_code == 401
        assert refused.json()["detail"]["code"] == "invalid_key"


@pytest.mark.parametrize("issued", ["mcpt_", "mcp_ (before mcpt_)"])
async def test_access_token_on_account_routes_is_refused_naming_both_kinds(
    runtime: Runtime, client: httpx.AsyncClient, issued: str
) -> None:
    user = await _user(runtime)
    headers = auth(runtime, user)
    await enable_account(client, headers)
    if issued == "mcpt_":
        created = await client.post("/api/v1/tokens", json={"name": "server"}, headers=headers)
        assert created.status_code == 201, created.text
        token = created.json()["token"]
    else:
        token = new_token("mcp_", 40)
        async with transaction(runtime.sessions) as session:
            session.add(
                AccessToken(
                    user_id=user.id,
                    name="from before mcpt_",
                    token_hash=hash_token(token),
                    token_prefix=token[:12],
                    scopes=["read"],
                )
            )

    for path in USAGE_ROUTES:
        refused = await client.get(path, headers=bearer(token))
        assert refused.status_code == 401, (path, refused.text)
        detail = refused.json()["detail"]
        assert detail["code"] == "invalid_key"
        assert "an access token (mcpt_...)" in detail["message"]
        assert "an account key (mcp_...)" in detail["message"]
