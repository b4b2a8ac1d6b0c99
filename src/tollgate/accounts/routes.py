"""MCP account self-service (seed 000's paths) and the admin credits routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from tollgate.accounts import credits, service
from tollgate.accounts.deps import CallerAccount, KeyStoreDep
from tollgate.accounts.schemas import (
    AdjustmentResponse,
    CreditAdjustment,
    LedgerEntry,
    LedgerPage,
    MCPAccountInfo,
    MCPEnableResponse,
    MCPRegenerateResponse,
    ToolCallRecord,
    UsageHistoryResponse,
    UsageSummaryResponse,
)
from tollgate.core.deps import PageLimit, PageOffset, PathId, SessionDep, SettingsDep
from tollgate.identity.deps import require
from tollgate.identity.models import User

router = APIRouter(prefix="/api/mcp", tags=["MCP account"])
admin_router = APIRouter(prefix="/api/v1/admin/accounts", tags=["admin accounts"])

AccountOwner = Annotated[User, Depends(require("mcp.account"))]
AccountsAdmin = Annotated[User, Depends(require("admin.accounts.manage"))]


@router.get("/account", response_model=MCPAccountInfo)
async def get_account(account: CallerAccount) -> MCPAccountInfo:
    """The caller's MCP account. JWT or account key."""
    return MCPAccountInfo.model_validate(account)


@router.post("/enable", response_model=MCPEnableResponse)
async def enable_mcp(
    user: AccountOwner, session: SessionDep, settings: SettingsDep
) -> MCPEnableResponse:
    """Create the caller's MCP account; the full key is in this answer only. JWT."""
    enabled = await service.enable(session, user, settings)
    return MCPEnableResponse(
        success=True,
        message="MCP enabled successfully! Store your API key securely - it won't be shown again.",
        mcp_api_key=enabled.key.full,
        account=MCPAccountInfo.model_validate(enabled.account),
    )


@router.post("/regenerate-key", response_model=MCPRegenerateResponse)
async def regenerate_key(
    user: AccountOwner, session: SessionDep, keys: KeyStoreDep
) -> MCPRegenerateResponse:
    """Replace the caller's key; the old one stops working at once. JWT."""
    account = await service.account_for_user(session, user.id)
    key = await service.regenerate_key(session, account, keys)
    return MCPRegenerateResponse(
        success=True,
        message=(
            "MCP API key regenerated successfully! Store it securely - it won't be shown again."
        ),
        mcp_api_key=key.full,
        mcp_key_prefix=key.prefix,
    )


@router.get("/usage", response_model=UsageHistoryResponse)
async def get_usage_history(
    account: CallerAccount,
    session: SessionDep,
    days: Annotated[int, Query(ge=1, le=90, description="Number of days to look back")] = 7,
    tool_name: Annotated[str | None, Query(max_length=200, description="Filter by tool")] = None,
    success_only: Annotated[bool, Query(description="Only successful calls")] = False,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
) -> UsageHistoryResponse:
    """The caller's tool calls of the last ``days`` days. JWT or account key."""
    total, calls = await service.usage_history(
        session,
        account.id,
        days=days,
        tool_name=tool_name,
        success_only=success_only,
        limit=limit,
        offset=offset,
    )
    return UsageHistoryResponse(
        total_calls=total,
        period_days=days,
        tool_calls=[ToolCallRecord.model_validate(c) for c in calls],
    )


@router.get("/usage/summary", response_model=UsageSummaryResponse)
async def get_usage_summary(account: CallerAccount, session: SessionDep) -> UsageSummaryResponse:
    """Today's and this month's usage (UTC). JWT or account key."""
    return await service.usage_summary(session, account)


@admin_router.get("/{account_id}", response_model=MCPAccountInfo)
async def read_account(account_id: PathId, _: AccountsAdmin, session: SessionDep) -> MCPAccountInfo:
    """Any account. Needs ``admin.accounts.manage``."""
    return MCPAccountInfo.model_validate(await service.get_account(session, account_id))


@admin_router.post("/{account_id}/credits", response_model=AdjustmentResponse)
async def adjust_credits(
    account_id: PathId, body: CreditAdjustment, admin: AccountsAdmin, session: SessionDep
) -> AdjustmentResponse:
    """Add (or take) credits with a reason, as an adjustment ledger row.

    Needs ``admin.accounts.manage``. Sending the same ``idempotency_key`` again changes nothing.
    """
    result = await service.grant_credits(
        session,
        account_id,
        body.amount,
        reason=body.reason,
        actor=admin.email,
        request_key=body.idempotency_key,
    )
    return AdjustmentResponse(
        amount=result.amount, balance_after=result.balance_after, replayed=result.replayed
    )


@admin_router.get("/{account_id}/ledger", response_model=LedgerPage)
async def read_ledger(
    account_id: PathId,
    _: AccountsAdmin,
    session: SessionDep,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
) -> LedgerPage:
    """An account's ledger, newest first. Needs ``admin.accounts.manage``."""
    await service.get_account(session, account_id)
    total, rows = await credits.ledger(session, account_id, limit=limit, offset=offset)
    return LedgerPage(total=total, entries=[LedgerEntry.model_validate(r) for r in rows])
