"""Operators' account routes: credit adjustments with a reason, and the ledger."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select

from tests.conftest import auth, enable_account, make_user
from tollgate.accounts.models import CreditTransaction, McpAccount
from tollgate.core.runtime import Runtime
from tollgate.identity.models import Role, User

ACCOUNTS = "/api/v1/admin/accounts"


async def _user(runtime: Runtime, **fields: Any) -> User:
    """A user who signs in by JWT only: no password, so no argon2 hash to wait for."""
    return await make_user(runtime, password="", **fields)


async def _admin(runtime: Runtime) -> tuple[str, dict[str, str]]:
    """An admin's email and Authorization header."""
    admin = await _user(runtime, role=Role.ADMIN)
    return admin.email, auth(runtime, admin)


async def _new_account(runtime: Runtime, client: httpx.AsyncClient) -> dict[str, Any]:
    """A new user's enable response (free tier, 50 credits)."""
    return await enable_account(client, auth(runtime, await _user(runtime)))


async def _account(runtime: Runtime, account_id: int) -> McpAccount:
    async with runtime.sessions() as session:
        account = await session.get(McpAccount, account_id)
    assert account is not None
    return account


async def _ledger_rows(runtime: Runtime, account_id: int) -> list[CreditTransaction]:
    async with runtime.sessions() as session:
        rows = await session.execute(
            select(CreditTransaction)
            .where(CreditTransaction.account_id == account_id)
            .order_by(CreditTransaction.id)
        )
        return list(rows.scalars())


async def test_admin_adjustment_adds_a_ledger_row_with_reason_and_admin_email(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    admin_email, headers = await _admin(runtime)
    account_id = (await _new_account(runtime, client))["account"]["id"]

    response = await client.post(
        f"{ACCOUNTS}/{account_id}/credits",
        json={"amount": 25, "reason": "Support goodwill", "idempotency_key": "ticket-1"},
        headers=headers,
    )

    assert response.status_code == 200
    assert response.json() == {"amount": 25, "balance_after": 75, "replayed": False}
    assert (await _account(runtime, account_id)).credits_balance == 75
    entry = (await _ledger_rows(runtime, account_id))[-1]
    assert entry.transaction_type == "adjustment"
    assert (entry.amount, entry.balance_before, entry.balance_after) == (25, 50, 75)
    assert entry.description == "Support goodwill"
    assert entry.created_by == admin_email


async def test_admin_can_take_credits_down_to_zero(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    _, headers = await _admin(runtime)
    account_id = (await _new_account(runtime, client))["account"]["id"]
    response = await client.post(
        f"{ACCOUNTS}/{account_id}/credits",
        json={"amount": -50, "reason": "Chargeback"},
        headers=headers,
    )
    assert response.status_code == 200
    assert response.json()["balance_after"] == 0
    assert (await _account(runtime, account_id)).credits_balance == 0


async def test_adjustment_below_zero_is_refused_and_changes_nothing(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    _, headers = await _admin(runtime)
    account_id = (await _new_account(runtime, client))["account"]["id"]
    before = await _ledger_rows(runtime, account_id)

    response = await client.post(
        f"{ACCOUNTS}/{account_id}/credits",
        json={"amount": -51, "reason": "Too much", "idempotency_key": "too-much"},
        headers=headers,
    )

    assert response.status_code == 409
    assert response.json()["detail"]["code"] == "balance_would_go_negative"
    assert (await _account(runtime, account_id)).credits_balance == 50
    assert [e.id for e in await _ledger_rows(runtime, account_id)] == [e.id for e in before]

    retried = await client.post(
        f"{ACCOUNTS}/{account_id}/credits",
        json={"amount": -20, "reason": "Right amount", "idempotency_key": "too-much"},
        headers=headers,
    )
    assert retried.status_code == 200
    assert retried.json() == {"amount": -20, "balance_after": 30, "replayed": False}


async def test_same_idempotency_key_twice_writes_one_row(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    _, headers = await _admin(runtime)
    account_id = (await _new_account(runtime, client))["account"]["id"]
    body = {"amount": 10, "reason": "Promo", "idempotency_key": "promo-2026"}

    first = await client.post(f"{ACCOUNTS}/{account_id}/credits", json=body, headers=headers)
    second = await client.post(f"{ACCOUNTS}/{account_id}/credits", json=body, headers=headers)

    assert first.json() == {"amount": 10, "balance_after": 60, "replayed": False}
    assert second.status_code == 200
    assert second.json() == {"amount": 10, "balance_after": 60, "replayed": True}
    assert (await _account(runtime, account_id)).credits_balance == 60
    adjustments = [
        e for e in await _ledger_rows(runtime, account_id) if e.transaction_type == "adjustment"
    ]
    assert len(adjustments) == 1


async def test_same_idempotency_key_on_two_accounts_adjusts_both(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    _, headers = await _admin(runtime)
    first_id = (await _new_account(runtime, client))["account"]["id"]
    second_id = (await _new_account(runtime, client))["account"]["id"]
    body = {"amount": 5, "reason": "Outage credit", "idempotency_key": "outage-7"}
    for account_id in (first_id, second_id):
        response = await client.post(f"{ACCOUNTS}/{account_id}/credits", json=body, headers=headers)
        assert response.json() == {"amount": 5, "balance_after": 55, "replayed": False}


async def test_adjustments_without_a_key_are_each_applied(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    _, headers = await _admin(runtime)
    account_id = (await _new_account(runtime, client))["account"]["id"]
    body = {"amount": 1, "reason": "Tip"}
    for _ in range(2):
        response = await client.post(f"{ACCOUNTS}/{account_id}/credits", json=body, headers=headers)
        assert response.json()["replayed"] is False
    assert (await _account(runtime, account_id)).credits_balance == 52


INVALID_BODIES = (
    {"amount": 5},
    {"amount": 5, "reason": "   "},
    {"amount": 5, "reason": "x", "idempotency_key": "has space"},
    {"amount": 5, "reason": "x", "surprise": True},
    {"amount": 10**10, "reason": "x"},
    {"amount": "lots", "reason": "x"},
)


async def test_invalid_adjustment_bodies_are_refused(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    _, headers = await _admin(runtime)
    account_id = (await _new_account(runtime, client))["account"]["id"]
    for body in INVALID_BODIES:
        response = await client.post(f"{ACCOUNTS}/{account_id}/credits", json=body, headers=headers)
        assert response.status_code == 422, body
    assert (await _account(runtime, account_id)).credits_balance == 50
    assert len(await _ledger_rows(runtime, account_id)) == 1


async def test_ledger_pages_newest_first(runtime: Runtime, client: httpx.AsyncClient) -> None:
    admin_email, headers = await _admin(runtime)
    account_id = (await _new_account(runtime, client))["account"]["id"]
    for n in range(1, 5):
        response = await client.post(
            f"{ACCOUNTS}/{account_id}/credits",
            json={"amount": n, "reason": f"step {n}", "idempotency_key": f"step-{n}"},
            headers=headers,
        )
        assert response.status_code == 200

    pages = []
    for offset in (0, 2, 4):
        response = await client.get(
            f"{ACCOUNTS}/{account_id}/ledger",
            params={"limit": 2, "offset": offset},
            headers=headers,
        )
        assert response.status_code == 200
        page = response.json()
        assert page["total"] == 5
        pages.append(page["entries"])

    entries = [e for page in pages for e in page]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [e["description"] for e in entries[:4]] == ["step 4", "step 3", "step 2", "step 1"]
    assert entries[4]["transaction_type"] == "monthly_refill"
    assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)
    newest = entries[0]
    assert (newest["amount"], newest["balance_before"], newest["balance_after"]) == (4, 56, 60)
    assert newest["created_by"] == admin_email
    assert newest["transaction_type"] == "adjustment"
    assert "idempotency_key" not in newest


async def test_admin_reads_any_account(runtime: Runtime, client: httpx.AsyncClient) -> None:
    _, headers = await _admin(runtime)
    enabled = await _new_account(runtime, client)
    response = await client.get(f"{ACCOUNTS}/{enabled['account']['id']}", headers=headers)
    assert response.status_code == 200
    assert response.json() == enabled["account"]
    assert enabled["mcp_api_key"] not in response.text


async def test_plain_users_are_forbidden_from_admin_account_routes(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    enabled = await _new_account(runtime, client)
    account_id = enabled["account"]["id"]
    headers = auth(runtime, await _user(runtime))
    responses = [
        await client.get(f"{ACCOUNTS}/{account_id}", headers=headers),
        await client.get(f"{ACCOUNTS}/{account_id}/ledger", headers=headers),
        await client.post(
            f"{ACCOUNTS}/{account_id}/credits",
            json={"amount": 1000, "reason": "me"},
            headers=headers,
        ),
    ]
    for response in responses:
        assert response.status_code == 403
        assert response.json()["detail"]["code"] == "permission_denied"
    key_caller = await client.get(
        f"{ACCOUNTS}/{account_id}", headers={"Authorization": f"Bearer {enabled['mcp_api_key']}"}
    )
    assert key_caller.status_code == 401
    assert (await _account(runtime, account_id)).credits_balance == 50


async def test_unknown_account_is_not_found(runtime: Runtime, client: httpx.AsyncClient) -> None:
    _, headers = await _admin(runtime)
    for response in (
        await client.get(f"{ACCOUNTS}/4242", headers=headers),
        await client.get(f"{ACCOUNTS}/4242/ledger", headers=headers),
        await client.post(
            f"{ACCOUNTS}/4242/credits", json={"amount": 1, "reason": "x"}, headers=headers
        ),
    ):
        assert response.status_code == 404
        assert response.json()["detail"]["code"] == "account_not_found"
    async with runtime.sessions() as session:
        count = await session.execute(select(func.count()).select_from(CreditTransaction))
        assert count.scalar_one() == 0


async def test_out_of_range_account_id_is_a_validation_error(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    _, headers = await _admin(runtime)
    for account_id in ("0", str(2**31), "abc"):
        response = await client.get(f"{ACCOUNTS}/{account_id}/ledger", headers=headers)
        assert response.status_code == 422, account_id
