"""The Stripe webhook route."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from tollgate.accounts import billing
from tollgate.core.deps import SessionDep, SettingsDep

router = APIRouter(prefix="/api/v1/billing", tags=["billing"])


@router.post("/stripe/webhook")
async def stripe_webhook(
    request: Request, session: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    """Subscription events from Stripe. Public, authenticated by ``Stripe-Signature``."""
    event = billing.verify_event(
        await request.body(), request.headers.get("Stripe-Signature"), settings
    )
    result = await billing.handle_event(session, event, settings)
    return {"received": result.received, "applied": result.applied, "reason": result.reason}
