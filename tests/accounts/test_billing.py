"""Stripe subscription webhooks: signed, applied once, in order, mapped to tiers and credits."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import stripe
from fastapi import FastAPI
from sqlalchemy import func, select

from tests.conftest import auth, enable_account, make_user, running
from tollgate.accounts import credits
from tollgate.accounts.models import BillingGrant, CreditTransaction, McpAccount, StripeEvent
from tollgate.app import create_app
from tollgate.core.database import transaction
from tollgate.core.runtime import Runtime
from tollgate.core.settings import Settings
from tollgate.identity.models import User

WEBHOOK = "/api/v1/billing/stripe/webhook"
SECRET = "whsec_test"
PERIOD_END = 1_900_000_000
"""A subscription period end (2030-03-17), well inside any test run's future."""
PERIOD_START = PERIOD_END - 30 * 86_400
"""The start of that period."""
NEXT_PERIOD_START = PERIOD_END
NEXT_PERIOD_END = PERIOD_END + 30 * 86_400


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
    period_start: int = PERIOD_START,
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
                "current_period_start": period_start,
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


async def _spend(runtime: Runtime, account_id: int, amount: int) -> None:
    """Take ``amount`` credits off the account, as tool calls would."""
    async with transaction(runtime.sessions) as session:
        await credits.adjust(
            session,
            account_id,
            -amount,
            reason="spent in a test",
            actor="test",
            idempotency_key=f"spend:{account_id}:{time.monotonic_ns()}",
        )


async def _grants(runtime: Runtime, account_id: int) -> list[tuple[str, int, str, int]]:
    async with runtime.sessions() as session:
        rows = await session.execute(
            select(BillingGrant).where(BillingGrant.account_id == account_id)
        )
        return [(g.subscription_id, g.period_start, g.tier, g.allocation) for g in rows.scalars()]


async def test_subscription_update_that_changes_neither_tier_nor_period_grants_nothing(
    billing_runtime: Runtime, billing_client: httpx.AsyncClient
) -> None:
    now = int(time.time())
    account_id = await _subscribed_account(billing_runtime, billing_client, now)
    await _spend(billing_runtime, account_id, 700)

    for number in range(5):  # new event ids, the same subscription state
        update = _event(
            f"evt_same_{number}", "customer.subscription.updated", account_id, created=now + number
        )
        assert (await _deliver(billing_client, update)).json()["applied"] is True
    replay = _event("evt_same_0", "customer.subscription.updated", account_id, created=now + 9)
    assert (await _deliver(billing_client, replay)).json()["reason"] == "duplicate_event"

    account = await _account(billing_runtime, account_id)
    assert account.credits_balance == 300
    assert [p.amount for p in await _purchases(billing_runtime, account_id)] == [950]
    assert await _grants(billing_runtime, account_id) == [("sub_123", PERIOD_START, "pro", 1000)]
    assert await _ledger_sum(billing_runtime, account_id) == 300


async def test_upgrade_within_a_period_grants_only_the_difference_of_the_allocations(
    billing_runtime: Runtime, billing_client: httpx.AsyncClient
) -> None:
    now = int(time.time())
    account_id = await _subscribed_account(billing_runtime, billing_client, now)
    await _spend(billing_runtime, account_id, 600)

    team = _event(
        "evt_team", "customer.subscription.updated", account_id, created=now + 1, tier="team"
    )
    assert (await _deliver(billing_client, team)).json()["applied"] is True
    team_again = _event(
        "evt_team_again", "customer.subscription.updated", account_id, created=now + 2, tier="team"
    )
    assert (await _deliver(billing_client, team_again)).json()["applied"] is True

    account = await _account(billing_runtime, account_id)
    assert account.credits_tier == "team"
    assert account.credits_balance == 400 + 4000
    assert [p.amount for p in await _purchases(billing_runtime, account_id)] == [950, 4000]
    assert await _grants(billing_runtime, account_id) == [("sub_123", PERIOD_START, "team", 5000)]
    assert await _ledger_sum(billing_runtime, account_id) == 4400


async def test_downgrade_grants_nothing_and_upgrading_back_in_the_same_period_neither(
    billing_runtime: Runtime, billing_client: httpx.AsyncClient
) -> None:
    now = int(time.time())
    account_id = await _new_account(billing_runtime, billing_client)
    created = _event(
        "evt_team", "customer.subscription.created", account_id, created=now, tier="team"
    )
    assert (await _deliver(billing_client, created)).json()["applied"] is True
    await _spend(billing_runtime, account_id, 4500)

    for number, tier in enumerate(["pro", "team", "pro", "team"], start=1):
        flip = _event(
            f"evt_flip_{number}",
            "customer.subscription.updated",
            account_id,
            created=now + number,
            tier=tier,
        )
        assert (await _deliver(billing_client, flip)).json()["applied"] is True
        assert (await _account(billing_runtime, account_id)).credits_tier == tier

    assert (await _account(billing_runtime, account_id)).credits_balance == 500
    assert [p.amount for p in await _purchases(billing_runtime, account_id)] == [4950]
    assert await _ledger_sum(billing_runtime, account_id) == 500


async def test_a_new_billing_period_tops_up_once(
    billing_runtime: Runtime, billing_client: httpx.AsyncClient
) -> None:
    now = int(time.time())
    account_id = await _subscribed_account(billing_runtime, billing_client, now)
    await _spend(billing_runtime, account_id, 900)

    for number in range(3):
        renewal = _event(
            f"evt_renewal_{number}",
            "customer.subscription.updated",
            account_id,
            created=now + 1 + number,
            period_start=NEXT_PERIOD_START,
            period_end=NEXT_PERIOD_END,
        )
        assert (await _deliver(billing_client, renewal)).json()["applied"] is True

    account = await _account(billing_runtime, account_id)
    assert account.credits_balance == 1000
    assert account.stripe_current_period_end == datetime.fromtimestamp(NEXT_PERIOD_END, UTC)
    assert [p.amount for p in await _purchases(billing_runtime, account_id)] == [950, 900]
    assert await _ledger_sum(billing_runtime, account_id) == 1000


async def test_an_unpaid_period_grants_when_it_is_paid(
    billing_runtime: Runtime, billing_client: httpx.AsyncClient
) -> None:
    now = int(time.time())
    account_id = await _new_account(billing_runtime, billing_client)
    incomplete = _event(
        "evt_incomplete",
        "customer.subscription.created",
        account_id,
        created=now,
        status="incomplete",
    )
    assert (await _deliver(billing_client, incomplete)).json()["applied"] is True
    assert await _purchases(billing_runtime, account_id) == []

    paid = _event("evt_paid", "customer.subscription.updated", account_id, created=now + 1)
    assert (await _deliver(billing_client, paid)).json()["applied"] is True

    assert (await _account(billing_runtime, account_id)).credits_balance == 1000
    assert [p.amount for p in await _purchases(billing_runtime, account_id)] == [950]


def _updated(account_id: int, **fields: Any) -> dict[str, Any]:
    """A subscription.updated event for ``account_id`` with top-level ``fields`` replaced."""
    event = _event("evt_odd", "customer.subscription.updated", account_id, created=1)
    return {**event, **fields}


def _subscription_with(account_id: int, **fields: Any) -> dict[str, Any]:
    """A subscription.updated event for ``account_id`` whose subscription has ``fields`` set."""
    event = _updated(account_id)
    event["data"]["object"].update(fields)
    return event


Malformed = Callable[[int], dict[str, Any] | str]

MALFORMED_EVENTS: dict[str, Malformed] = {
    "data-is-a-list": lambda a: _updated(a, data=[]),
    "object-is-a-list": lambda a: _updated(a, data={"object": [a]}),
    "no-data": lambda a: {"id": "evt_odd", "type": "customer.subscription.updated"},
    "created-is-text": lambda a: _updated(a, created="yesterday"),
    "created-is-huge": lambda a: _updated(a, created=10**20),
    "type-is-a-list": lambda a: _updated(a, type=[]),
    "id-is-a-number": lambda a: _updated(a, id=7),
    "metadata-is-a-list": lambda a: _subscription_with(a, metadata=["tier", "team"]),
    "metadata-value-is-a-number": lambda a: _subscription_with(
        a, metadata={"tollgate_account_id": a, "tier": "team"}
    ),
    "items-is-text": lambda a: _subscription_with(a, items="all of them"),
    "item-data-is-an-object": lambda a: _subscription_with(a, items={"data": {"price": "x"}}),
    "price-is-text": lambda a: _subscription_with(a, items={"data": [{"price": "price_123"}]}),
    "status-is-a-number": lambda a: _subscription_with(a, status=3),
    "customer-is-a-number": lambda a: _subscription_with(a, customer=12),
    "period-start-in-year-33658": lambda a: _subscription_with(a, current_period_start=10**12),
    "period-start-before-1970": lambda a: _subscription_with(a, current_period_start=-1),
    "period-end-in-year-33658": lambda a: _subscription_with(a, current_period_end=10**12),
    "period-end-is-fractional": lambda a: _subscription_with(a, current_period_end=1.5),
    "item-period-end-is-huge": lambda a: _subscription_with(
        a, current_period_end=None, items={"data": [{"current_period_end": 10**30}]}
    ),
    "deeply-nested": lambda a: (
        '{"id": "evt_odd", "type": "customer.subscription.updated", "data": '
        + "[" * 100_000
        + "]" * 100_000
        + "}"
    ),
}
"""Events a valid signature may carry that do not read as a subscription event."""


@pytest.mark.parametrize("malformed", list(MALFORMED_EVENTS.values()), ids=list(MALFORMED_EVENTS))
async def test_malformed_subscription_event_with_a_valid_signature_is_refused(
    billing_runtime: Runtime, billing_client: httpx.AsyncClient, malformed: Malformed
) -> None:
    account_id = await _new_account(billing_runtime, billing_client)

    response = await _deliver(billing_client, malformed(account_id))

    assert response.status_code == 400, response.text
    assert response.json()["detail"]["code"] == "invalid_payload"
    account = await _account(billing_runtime, account_id)
    assert (account.credits_tier, account.credits_balance) == ("free", 50)
    assert account.stripe_last_event_at is None
