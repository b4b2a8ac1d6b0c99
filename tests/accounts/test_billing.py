"""Stripe subscription webhooks: signed, applied once, in order, mapped to tiers and credits."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import stripe
from fastapi import FastAPI
from sqlalchemy import func, select

from tests.conftest import auth, enable_account, make_user, running
from tollgate.accounts.models import CreditTransaction, McpAccount, StripeEvent
from tollgate.app import create_app
from tollgate.core.runtime import Runtime
from tollgate.core.settings import Settings
from tollgate.identity.models import User

WEBHOOK = "/api/v1/billing/stripe/webhook"
SECRET = "whsec_test"
PERIOD_END = 1_900_000_000
"""A subscription period end (2030-03-17), well inside any test run's future."""


async def _user(runtime: Runtime, **fields: Any) -> User:
    """A user who signs in by JWT only: no password, so no argon2 hash to wait for."""
    return await make_user(runtime, password="", **fields)


@pytest.fixture
async def billing_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app with a Stripe webhook secret configured."""
    configured = settings.model_copy(update={"stripe_webhook_secret": SECRET})
    async with running(create_app(configured, configure_logs=False)) as application:
        yield application


@pytest.fixture
def billing_runtime(billing_app: FastAPI) -> Runtime:
    runtime = billing_app.state.runtime
    assert isinstance(runtime, Runtime)
    return runtime


@pytest.fixture
async def billing_client(billing_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=billing_app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def _event(
    event_id: str,
    event_type: str,
    account_id: int | None,
    *,
    created: int,
    tier: str = "pro",
    status: str = "active",
    period_end: int = PERIOD_END,
) -> dict[str, Any]:
    """A subscription event shaped like Stripe's."""
    metadata = {"tier": tier}
    if account_id is not None:
        metadata["tollgate_account_id"] = str(account_id)
    return {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "created": created,
        "data": {
            "object": {
                "id": "sub_123",
                "object": "subscription",
                "customer": "cus_123",
                "status": status,
                "current_period_end": period_end,
                "metadata": metadata,
            }
        },
    }


async def _deliver(
    client: httpx.AsyncClient,
    payload: dict[str, Any] | str,
    *,
    secret: str = SECRET,
    timestamp: int | None = None,
) -> httpx.Response:
    body = payload if isinstance(payload, str) else json.dumps(payload)
    signature = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp)
    return await client.post(
        WEBHOOK,
        content=body,
        headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
    )


async def _new_account(runtime: Runtime, client: httpx.AsyncClient) -> int:
    body = await enable_account(client, auth(runtime, await _user(runtime)))
    account_id: int = body["account"]["id"]
    return account_id


async def _account(runtime: Runtime, account_id: int) -> McpAccount:
    async with runtime.sessions() as session:
        account = await session.get(McpAccount, account_id)
    assert account is not None
    return account


async def _purchases(runtime: Runtime, account_id: int) -> list[CreditTransaction]:
    async with runtime.sessions() as session:
        rows = await session.execute(
            select(CreditTransaction)
            .where(
                CreditTransaction.account_id == account_id,
                CreditTransaction.transaction_type == "purchase",
            )
            .order_by(CreditTransaction.id)
        )
        return list(rows.scalars())


async def _ledger_sum(runtime: Runtime, account_id: int) -> int:
    async with runtime.sessions() as session:
        total = await session.execute(
            select(func.sum(CreditTransaction.amount)).where(
                CreditTransaction.account_id == account_id
            )
        )
        return int(total.scalar_one())


async def _subscribed_account(runtime: Runtime, client: httpx.AsyncClient, created: int) -> int:
    """An account upgraded to pro by a subscription.created event."""
    account_id = await _new_account(runtime, client)
    response = await _deliver(
        client, _event("evt_created", "customer.subscription.created", account_id, created=created)
    )
    assert response.status_code == 200, response.text
    assert response.json()["applied"] is True
    return account_id


async def test_subscription_created_upgrades_to_pro_and_tops_up_the_balance(
    billing_runtime: Runtime, billing_client: httpx.AsyncClient
) -> None:
    account_id = await _new_account(billing_runtime, billing_client)
    event = _event(
        "evt_created", "customer.subscription.created", account_id, created=int(time.time())
    )

    response = await _deliver(billing_client, event)

    assert response.status_code == 200
    assert response.json() == {"received": True, "applied": True, "reason": None}
    account = await _account(billing_runtime, account_id)
    assert account.credits_tier == "pro"
    assert (
        account.credits_monthly_allocation
        == billing_runtime.settings.tier("pro").monthly_allocation
    )
    assert account.credits_monthly_allocation == 1000
    assert account.stripe_subscription_status == "active"
    assert account.stripe_subscription_id == "sub_123"
    assert account.stripe_customer_id == "cus_123"
    assert account.stripe_current_period_end == datetime.fromtimestamp(PERIOD_END, UTC)
    assert account.credits_balance == 1000
    [purchase] = await _purchases(billing_runtime, account_id)
    assert (purchase.amount, purchase.balance_before, purchase.balance_after) == (950, 50, 1000)
    assert purchase.created_by == "stripe"
    assert await _ledger_sum(billing_runtime, account_id) == 1000


async def test_owner_sees_the_upgrade_on_the_account_route(
    billing_runtime: Runtime, billing_client: httpx.AsyncClient
) -> None:
    user = await _user(billing_runtime)
    headers = auth(billing_runtime, user)
    body = await enable_account(billing_client, headers)
    event = _event(
        "evt_seen", "customer.subscription.created", body["account"]["id"], created=int(time.time())
    )
    assert (await _deliver(billing_client, event)).status_code == 200
    account = (await billing_client.get("/api/mcp/account", headers=headers)).json()
    assert account["credits_tier"] == "pro"
    assert account["credits_balance"] == 1000
    assert account["stripe_subscription_status"] == "active"


async def test_subscription_updated_changes_status_period_and_tier(
    billing_runtime: Runtime, billing_client: httpx.AsyncClient
) -> None:
    now = int(time.time())
    account_id = await _subscribed_account(billing_runtime, billing_client, now)

    past_due = _event(
        "evt_past_due",
        "customer.subscription.updated",
        account_id,
        created=now + 10,
        status="past_due",
        period_end=PERIOD_END + 86_400,
    )
    assert (await _deliver(billing_client, past_due)).json()["applied"] is True
    account = await _account(billing_runtime, account_id)
    assert account.stripe_subscription_status == "past_due"
    assert account.credits_tier == "pro"
    assert account.stripe_current_period_end == datetime.fromtimestamp(PERIOD_END + 86_400, UTC)
    assert len(await _purchases(billing_runtime, account_id)) == 1

    team = _event(
        "evt_team", "customer.subscription.updated", account_id, created=now + 20, tier="team"
    )
    assert (await _deliver(billing_client, team)).json()["applied"] is True
    account = await _account(billing_runtime, account_id)
    assert account.credits_tier == "team"
    assert account.credits_monthly_allocation == 5000
    assert account.stripe_subscription_status == "active"
    assert account.credits_balance == 5000
    assert [p.amount for p in await _purchases(billing_runtime, account_id)] == [950, 4000]
    assert await _ledger_sum(billing_runtime, account_id) == 5000


async def test_subscription_deleted_returns_the_account_to_free_as_canceled(
    billing_runtime: Runtime, billing_client: httpx.AsyncClient
) -> None:
    now = int(time.time())
    account_id = await _subscribed_account(billing_runtime, billing_client, now)

    deleted = _event("evt_deleted", "customer.subscription.deleted", account_id, created=now + 10)
    response = await _deliver(billing_client, deleted)

    assert response.json() == {"received": True, "applied": True, "reason": None}
    account = await _account(billing_runtime, account_id)
    assert account.credits_tier == "free"
    assert account.credits_monthly_allocation == 50
    assert account.stripe_subscription_status == "canceled"
    assert account.stripe_subscription_id is None
    assert len(await _purchases(billing_runtime, account_id)) == 1
    assert await _ledger_sum(billing_runtime, account_id) == account.credits_balance


async def test_subscription_updated_to_an_ended_status_falls_back_to_free(
    billing_runtime: Runtime, billing_client: httpx.AsyncClient
) -> None:
    now = int(time.time())
    account_id = await _subscribed_account(billing_runtime, billing_client, now)
    unpaid = _event(
        "evt_unpaid", "customer.subscription.updated", account_id, created=now + 10, status="unpaid"
    )
    assert (await _deliver(billing_client, unpaid)).json()["applied"] is True
    account = await _account(billing_runtime, account_id)
    assert account.credits_tier == "free"
    assert account.credits_monthly_allocation == 50
    assert account.stripe_subscription_status == "unpaid"
    assert account.stripe_subscription_id is None


async def test_later_events_find_the_account_by_customer_and_tier_by_price(
    billing_runtime: Runtime, billing_client: httpx.AsyncClient
) -> None:
    now = int(time.time())
    account_id = await _subscribed_account(billing_runtime, billing_client, now)
    event = _event("evt_by_customer", "customer.subscription.updated", None, created=now + 10)
    subscription = event["data"]["object"]
    subscription["metadata"] = {}
    subscription["items"] = {"data": [{"price": {"id": "price_x", "lookup_key": "team"}}]}

    response = await _deliver(billing_client, event)

    assert response.json()["applied"] is True
    account = await _account(billing_runtime, account_id)
    assert account.credits_tier == "team"
    assert account.credits_balance == 5000
    assert await _ledger_sum(billing_runtime, account_id) == 5000


async def test_replayed_event_changes_nothing(
    billing_runtime: Runtime, billing_client: httpx.AsyncClient
) -> None:
    now = int(time.time())
    account_id = await _subscribed_account(billing_runtime, billing_client, now)
    deleted = _event("evt_deleted", "customer.subscription.deleted", account_id, created=now + 10)
    assert (await _deliver(billing_client, deleted)).json()["applied"] is True

    replayed = await _deliver(
        billing_client,
        _event("evt_created", "customer.subscription.created", account_id, created=now + 20),
    )

    assert replayed.status_code == 200
    assert replayed.json() == {"received": True, "applied": False, "reason": "duplicate_event"}
    account = await _account(billing_runtime, account_id)
    assert account.credits_tier == "free"
    assert account.stripe_subscription_status == "canceled"
    assert len(await _purchases(billing_runtime, account_id)) == 1
    async with billing_runtime.sessions() as session:
        stored = await session.execute(select(func.count()).select_from(StripeEvent))
        assert stored.scalar_one() == 2


async def test_older_event_after_a_newer_one_is_ignored(
    billing_runtime: Runtime, billing_client: httpx.AsyncClient
) -> None:
    now = int(time.time())
    account_id = await _new_account(billing_runtime, billing_client)
    newer = _event(
        "evt_newer", "customer.subscription.updated", account_id, created=now, tier="team"
    )
    older = _event(
        "evt_older",
        "customer.subscription.updated",
        account_id,
        created=now - 60,
        tier="pro",
        status="past_due",
    )
    assert (await _deliver(billing_client, newer)).json()["applied"] is True

    response = await _deliver(billing_client, older)

    assert response.status_code == 200
    assert response.json() == {"received": True, "applied": False, "reason": "stale_event"}
    account = await _account(billing_runtime, account_id)
    assert account.credits_tier == "team"
    assert account.stripe_subscription_status == "active"
    assert account.stripe_last_event_at == now


async def test_bad_signature_is_refused(
    billing_runtime: Runtime, billing_client: httpx.AsyncClient
) -> None:
    account_id = await _new_account(billing_runtime, billing_client)
    event = _event("evt_forged", "customer.subscription.created", account_id, created=0)

    forged = await _deliver(billing_client, event, secret="whsec_someone_else")
    assert forged.status_code == 400
    assert forged.json()["detail"]["code"] == "invalid_signature"

    body = json.dumps(event)
    signature = stripe.WebhookSignature.generate_signature_header(body, SECRET)
    tampered = await billing_client.post(
        WEBHOOK,
        content=body.replace('"pro"', '"team"'),
        headers={"Stripe-Signature": signature},
    )
    assert tampered.status_code == 400
    assert tampered.json()["detail"]["code"] == "invalid_signature"

    stale = await _deliver(billing_client, event, timestamp=int(time.time()) - 3600)
    assert stale.status_code == 400
    assert stale.json()["detail"]["code"] == "invalid_signature"

    assert (await _account(billing_runtime, account_id)).credits_tier == "free"
    assert await _purchases(billing_runtime, account_id) == []


async def test_missing_signature_header_is_refused(billing_client: httpx.AsyncClient) -> None:
    response = await billing_client.post(
        WEBHOOK, content=json.dumps(_event("evt_x", "customer.subscription.created", 1, created=0))
    )
    assert response.status_code == 400
    assert response.json()["detail"]["code"] == "invalid_signature"


async def test_webhook_without_a_configured_secret_is_unavailable(
    client: httpx.AsyncClient,
) -> None:
    body = json.dumps(_event("evt_x", "customer.subscription.created", 1, created=0))
    response = await client.post(
        WEBHOOK,
        content=body,
        headers={
            "Stripe-Signature": stripe.WebhookSignature.generate_signature_header(body, SECRET)
        },
    )
    assert response.status_code == 503
    assert response.json()["detail"]["code"] == "billing_not_configured"


async def test_unknown_event_type_is_acknowledged_without_changes(
    billing_runtime: Runtime, billing_client: httpx.AsyncClient
) -> None:
    account_id = await _new_account(billing_runtime, billing_client)
    event = _event("evt_invoice", "invoice.paid", account_id, created=int(time.time()))

    response = await _deliver(billing_client, event)

    assert response.status_code == 200
    assert response.json() == {"received": True, "applied": False, "reason": "ignored_event_type"}
    account = await _account(billing_runtime, account_id)
    assert account.credits_tier == "free"
    assert account.stripe_subscription_status is None
    assert account.credits_balance == 50
    async with billing_runtime.sessions() as session:
        stored = await session.execute(select(func.count()).select_from(StripeEvent))
        assert stored.scalar_one() == 0


async def test_event_for_an_unknown_account_is_acknowledged_without_changes(
    billing_runtime: Runtime, billing_client: httpx.AsyncClient
) -> None:
    account_id = await _new_account(billing_runtime, billing_client)
    event = _event("evt_nobody", "customer.subscription.created", None, created=int(time.time()))
    response = await _deliver(billing_client, event)
    assert response.status_code == 200
    assert response.json()["reason"] == "unknown_account"
    assert (await _account(billing_runtime, account_id)).credits_tier == "free"


@pytest.mark.parametrize(
    "payload",
    ["{not json", "[1, 2, 3]", '{"type": "customer.subscription.created"}', "\u00e9t\u00e9 \ud7ff"],
    ids=["broken", "array", "no-id", "text"],
)
async def test_garbage_payload_with_a_valid_signature_is_refused(
    billing_client: httpx.AsyncClient, payload: str
) -> None:
    response = await _deliver(billing_client, payload)
    assert response.status_code == 400
    assert response.json()["detail"]["code"] == "invalid_payload"
