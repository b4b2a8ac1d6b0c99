"""Stripe subscriptions: map subscription events to an account's tier and allocation.

Each event is applied once (its id is stored), events older than the last one applied to an
account are ignored, and an upgrade tops the balance up to the new allocation at once.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stripe
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tollgate.accounts import credits
from tollgate.accounts.models import McpAccount, StripeEvent, TransactionType
from tollgate.core.errors import BadRequest, ServiceUnavailable
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

SIGNATURE_TOLERANCE_SECONDS = 300
"""Stripe's own default: older signed payloads are refused as possible replays."""


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
        event = json.loads(text)
    except (stripe.SignatureVerificationError, UnicodeDecodeError) as exc:
        raise BadRequest("Invalid Stripe signature", code="invalid_signature") from exc
    except ValueError as exc:
        raise BadRequest("Invalid webhook payload", code="invalid_payload") from exc
    if not isinstance(event, dict) or not isinstance(event.get("id"), str):
        raise BadRequest("Invalid webhook payload", code="invalid_payload")
    return event


async def handle_event(
    session: AsyncSession, event: dict[str, Any], settings: Settings
) -> WebhookResult:
    """Apply a verified event once."""
    event_type = str(event.get("type", ""))
    if event_type not in SUBSCRIPTION_EVENTS:
        return WebhookResult(received=True, applied=False, reason="ignored_event_type")
    subscription = (event.get("data") or {}).get("object") or {}
    if not isinstance(subscription, dict):
        raise BadRequest("Invalid webhook payload", code="invalid_payload")
    account = await _find_account(session, subscription)
    try:
        async with session.begin_nested():
            session.add(
                StripeEvent(
                    id=event["id"],
                    event_type=event_type,
                    account_id=account.id if account else None,
                )
            )
            await session.flush()
    except IntegrityError:
        return WebhookResult(received=True, applied=False, reason="duplicate_event")
    if account is None:
        logger.warning("stripe event %s names no known account", event["id"])
        return WebhookResult(received=True, applied=False, reason="unknown_account")
    created = int(event.get("created") or 0)
    if account.stripe_last_event_at is not None and created < account.stripe_last_event_at:
        return WebhookResult(received=True, applied=False, reason="stale_event")
    if _ends_another_subscription(account, subscription, event_type):
        return WebhookResult(received=True, applied=False, reason="other_subscription")
    await _apply_subscription(session, account, subscription, event, settings)
    return WebhookResult(received=True, applied=True)


def _ends_another_subscription(
    account: McpAccount, subscription: dict[str, Any], event_type: str
) -> bool:
    """An old subscription ending must not downgrade an account that moved to a new one."""
    return (
        event_type == "customer.subscription.deleted"
        and account.stripe_subscription_id is not None
        and subscription.get("id") != account.stripe_subscription_id
    )


async def _find_account(session: AsyncSession, subscription: dict[str, Any]) -> McpAccount | None:
    metadata = subscription.get("metadata") or {}
    account_id = str(metadata.get("tollgate_account_id", ""))
    if account_id.isdigit():
        account = await session.get(McpAccount, int(account_id))
        if account is not None:
            return account
    customer = subscription.get("customer")
    if isinstance(customer, str) and customer:
        query = select(McpAccount).where(McpAccount.stripe_customer_id == customer)
        return (await session.execute(query)).scalars().first()
    return None


def _tier_of(subscription: dict[str, Any], settings: Settings) -> str | None:
    named = (subscription.get("metadata") or {}).get("tier")
    if isinstance(named, str) and named in settings.credit_tiers:
        return named
    for item in (subscription.get("items") or {}).get("data") or []:
        price = item.get("price") or {}
        if price.get("lookup_key") in settings.credit_tiers:
            return str(price["lookup_key"])
        for tier_name, tier in settings.credit_tiers.items():
            if price.get("id") in tier.stripe_price_ids:
                return tier_name
    return None


def _period_end(subscription: dict[str, Any]) -> datetime | None:
    end = subscription.get("current_period_end")
    if end is None:
        items = (subscription.get("items") or {}).get("data") or [{}]
        end = items[0].get("current_period_end")
    return datetime.fromtimestamp(int(end), UTC) if isinstance(end, int | float) else None


async def _apply_subscription(
    session: AsyncSession,
    account: McpAccount,
    subscription: dict[str, Any],
    event: dict[str, Any],
    settings: Settings,
) -> None:
    status = str(subscription.get("status") or "")
    ended = event["type"] == "customer.subscription.deleted" or status in ENDED_STATUSES
    tier = (
        settings.default_tier
        if ended
        else (_tier_of(subscription, settings) or account.credits_tier)
    )
    allocation = settings.tier(tier).monthly_allocation
    account.credits_tier = tier
    account.credits_monthly_allocation = allocation
    account.stripe_subscription_status = "canceled" if event["type"].endswith("deleted") else status
    account.stripe_subscription_id = subscription.get("id") if not ended else None
    account.stripe_current_period_end = _period_end(subscription)
    if isinstance(subscription.get("customer"), str):
        account.stripe_customer_id = subscription["customer"]
    account.stripe_last_event_at = int(event.get("created") or 0)
    await session.flush()
    if not ended and account.credits_balance < allocation:
        await credits.adjust(
            session,
            account.id,
            allocation - account.credits_balance,
            reason=f"Upgrade to {tier}",
            actor="stripe",
            idempotency_key=f"stripe:{event['id']}",
            transaction_type=TransactionType.PURCHASE,
        )
        await session.refresh(account)
