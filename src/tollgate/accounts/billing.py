"""Stripe subscriptions: map subscription events to an account's tier and allocation.

Each event is applied once (its id is stored), and events older than the last one applied
to an account are ignored. Credits are granted once per (subscription, billing period): the
first grant of a period tops the balance up to the tier's allocation; a real upgrade within
the period grants only the difference between the two tiers' allocations; a downgrade, a
renewal of the same state, or a new event id for it grants nothing. A payload that a valid
signature carries but that does not read as a subscription event is a 400, never a 500.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import stripe
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tollgate.accounts import credits
from tollgate.accounts.models import BillingGrant, McpAccount, StripeEvent, TransactionType
from tollgate.core.errors import BadRequest, InvalidWebhookPayload, ServiceUnavailable
from tollgate.core.settings import Settings

logger = logging.getLogger(__name__)

SUBSCRIPTION_EVENTS = frozenset(
    {
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
    }
)
ENDED_STATUSES = frozenset({"canceled", "unpaid", "incomplete_expired"})
"""Subscription states in which the account falls back to the default tier."""

GRANTING_STATUSES = frozenset({"active", "trialing"})
"""Subscription states whose period has been paid for (or is a trial): only these grant
credits. A ``past_due`` period grants once it becomes ``active``."""

SIGNATURE_TOLERANCE_SECONDS = 300
"""Stripe's own default: older signed payloads are refused as possible replays."""

MAX_TIMESTAMP = 253_402_300_799
"""9999-12-31T23:59:59Z: the last second a timestamp column (and ``datetime``) can hold."""

Timestamp = Annotated[int, Field(strict=True, ge=0, le=MAX_TIMESTAMP)]
"""Unix seconds as Stripe sends them: a whole number, not before 1970, not after 9999."""


class _Part(BaseModel):
    """A part of a Stripe payload: unknown fields are Stripe's business, known ones are typed."""

    model_config = ConfigDict(extra="ignore", strict=True)


class _Price(_Part):
    id: str | None = None
    lookup_key: str | None = None


class _Item(_Part):
    price: _Price | None = None
    current_period_start: Timestamp | None = None
    current_period_end: Timestamp | None = None


class _Items(_Part):
    data: list[_Item] | None = None


class Subscription(_Part):
    """The fields of a Stripe subscription object that Tollgate reads."""

    id: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    customer: Annotated[str, Field(max_length=255)] | None = None
    status: Annotated[str, Field(max_length=32)] | None = None
    current_period_start: Timestamp | None = None
    current_period_end: Timestamp | None = None
    metadata: dict[str, str] | None = None
    items: _Items | None = None

    @field_validator("customer", mode="before")
    @classmethod
    def _expanded_customer(cls, value: Any) -> Any:
        """Stripe sends the customer's id, or the customer object when expanded."""
        return value.get("id") if isinstance(value, dict) else value

    def meta(self, name: str) -> str | None:
        """A metadata value, if set."""
        return (self.metadata or {}).get(name)

    def first_item(self) -> _Item | None:
        """The first subscription item (newer API versions keep the period there)."""
        data = self.items.data if self.items is not None else None
        return data[0] if data else None

    def prices(self) -> list[_Price]:
        """The prices of the subscription's items."""
        data = (self.items.data if self.items is not None else None) or []
        return [item.price for item in data if item.price is not None]

    def period_start(self) -> int | None:
        """The current period's start, or its end when the payload carries no start: either
        names the period (a payload carries one kind or the other consistently)."""
        item = self.first_item()
        for value in (
            self.current_period_start,
            item.current_period_start if item else None,
            self.current_period_end,
            item.current_period_end if item else None,
        ):
            if value is not None:
                return value
        return None

    def period_end(self) -> datetime | None:
        """When the current period ends."""
        item = self.first_item()
        end = self.current_period_end
        if end is None and item is not None:
            end = item.current_period_end
        return datetime.fromtimestamp(end, UTC) if end is not None else None


class _Event(_Part):
    id: Annotated[str, Field(min_length=1, max_length=255)]
    type: Annotated[str, Field(max_length=100)] = ""
    created: Timestamp = 0


class _SubscriptionData(_Part):
    object: Subscription


class _SubscriptionEvent(_Event):
    data: _SubscriptionData


@dataclass(frozen=True)
class WebhookResult:
    """What a webhook delivery did."""

    received: bool
    applied: bool
    reason: str | None = None


def verify_event(payload: bytes, signature: str | None, settings: Settings) -> dict[str, Any]:
    """The event in ``payload`` if ``Stripe-Signature`` proves it came from Stripe."""
    if not settings.stripe_webhook_secret:
        raise ServiceUnavailable("Billing is not configured", code="billing_not_configured")
    if not signature:
        raise BadRequest("Missing Stripe-Signature header", code="invalid_signature")
    try:
        text = payload.decode()
        stripe.WebhookSignature.verify_header(
            text, signature, settings.stripe_webhook_secret, SIGNATURE_TOLERANCE_SECONDS
        )
    except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError) as exc:
        raise BadRequest("Invalid Stripe signature", code="invalid_signature") from exc
    try:
        event = json.loads(text)
        _Event.model_validate(event)
    except (ValueError, RecursionError) as exc:  # ValidationError is a ValueError
        raise InvalidWebhookPayload(exc) from exc
    assert isinstance(event, dict)
    return event


def _parse(event: dict[str, Any]) -> _SubscriptionEvent:
    try:
        return _SubscriptionEvent.model_validate(event)
    except (ValidationError, RecursionError) as exc:
        raise InvalidWebhookPayload(exc) from exc


async def handle_event(
    session: AsyncSession, event: dict[str, Any], settings: Settings
) -> WebhookResult:
    """Apply a verified event once."""
    event_type = event.get("type")
    if event_type not in SUBSCRIPTION_EVENTS:
        return WebhookResult(received=True, applied=False, reason="ignored_event_type")
    parsed = _parse(event)
    subscription = parsed.data.object
    account = await _find_account(session, subscription)
    try:
        async with session.begin_nested():
            session.add(
                StripeEvent(
                    id=parsed.id,
                    event_type=parsed.type,
                    account_id=account.id if account else None,
                )
            )
            await session.flush()
    except IntegrityError:
        return WebhookResult(received=True, applied=False, reason="duplicate_event")
    if account is None:
        logger.warning("stripe event %s names no known account", parsed.id)
        return WebhookResult(received=True, applied=False, reason="unknown_account")
    if account.stripe_last_event_at is not None and parsed.created < account.stripe_last_event_at:
        return WebhookResult(received=True, applied=False, reason="stale_event")
    if _ends_another_subscription(account, subscription, parsed.type):
        return WebhookResult(received=True, applied=False, reason="other_subscription")
    await _apply_subscription(session, account, parsed, settings)
    return WebhookResult(received=True, applied=True)


def _ends_another_subscription(
    account: McpAccount, subscription: Subscription, event_type: str
) -> bool:
    """An old subscription ending must not downgrade an account that moved to a new one."""
    return (
        event_type == "customer.subscription.deleted"
        and account.stripe_subscription_id is not None
        and subscription.id != account.stripe_subscription_id
    )


async def _find_account(session: AsyncSession, subscription: Subscription) -> McpAccount | None:
    account_id = subscription.meta("tollgate_account_id") or ""
    if account_id.isascii() and account_id.isdigit() and len(account_id) <= 9:
        account = await session.get(McpAccount, int(account_id))
        if account is not None:
            return account
    if subscription.customer:
        query = select(McpAccount).where(McpAccount.stripe_customer_id == subscription.customer)
        return (await session.execute(query)).scalars().first()
    return None


def _tier_of(subscription: Subscription, settings: Settings) -> str | None:
    named = subscription.meta("tier")
    if named is not None and named in settings.credit_tiers:
        return named
    for price in subscription.prices():
        if price.lookup_key is not None and price.lookup_key in settings.credit_tiers:
            return price.lookup_key
        for tier_name, tier in settings.credit_tiers.items():
            if price.id in tier.stripe_price_ids:
                return tier_name
    return None


async def _apply_subscription(
    session: AsyncSession, account: McpAccount, event: _SubscriptionEvent, settings: Settings
) -> None:
    subscription = event.data.object
    status = subscription.status or ""
    deleted = event.type == "customer.subscription.deleted"
    ended = deleted or status in ENDED_STATUSES
    tier = (
        settings.default_tier
        if ended
        else (_tier_of(subscription, settings) or account.credits_tier)
    )
    allocation = settings.tier(tier).monthly_allocation
    account.credits_tier = tier
    account.credits_monthly_allocation = allocation
    account.stripe_subscription_status = "canceled" if deleted else status
    account.stripe_subscription_id = subscription.id if not ended else None
    account.stripe_current_period_end = subscription.period_end()
    if subscription.customer:
        account.stripe_customer_id = subscription.customer
    account.stripe_last_event_at = event.created
    await session.flush()
    if not ended and status in GRANTING_STATUSES:
        await _grant_for_period(session, account, subscription, tier, allocation)


async def _grant_for_period(
    session: AsyncSession,
    account: McpAccount,
    subscription: Subscription,
    tier: str,
    allocation: int,
) -> None:
    """Grant what this (subscription, period) has not been granted yet, once."""
    period = subscription.period_start()
    if subscription.id is None or period is None:
        logger.warning("stripe subscription without an id or a period: no credits granted")
        return
    key = f"stripe:{subscription.id}:{period}"
    if await _claim_period(session, account.id, subscription.id, period, tier, allocation):
        amount, reason = allocation - account.credits_balance, f"Subscription to {tier}"
    else:
        grant = await _locked_grant(session, subscription.id, period)
        if allocation <= grant.allocation:
            return  # the same tier again, or a downgrade: this period was paid for already
        amount, reason = allocation - grant.allocation, f"Upgrade to {tier}"
        key = f"{key}:{tier}"
        grant.tier, grant.allocation = tier, allocation
        await session.flush()
    if amount <= 0:
        return
    await credits.adjust(
        session,
        account.id,
        amount,
        reason=reason,
        actor="stripe",
        idempotency_key=key,
        transaction_type=TransactionType.PURCHASE,
    )
    await session.refresh(account)


async def _claim_period(
    session: AsyncSession,
    account_id: int,
    subscription_id: str,
    period: int,
    tier: str,
    allocation: int,
) -> bool:
    """Record the period's first grant; False if it was recorded before (by any process)."""
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    claimed = await session.execute(
        insert(BillingGrant)
        .values(
            account_id=account_id,
            subscription_id=subscription_id,
            period_start=period,
            tier=tier,
            allocation=allocation,
        )
        .on_conflict_do_nothing(index_elements=["subscription_id", "period_start"])
        .returning(BillingGrant.id)
    )
    return claimed.scalar_one_or_none() is not None


async def _locked_grant(session: AsyncSession, subscription_id: str, period: int) -> BillingGrant:
    query = (
        select(BillingGrant)
        .where(BillingGrant.subscription_id == subscription_id, BillingGrant.period_start == period)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.execute(query)).scalar_one()
