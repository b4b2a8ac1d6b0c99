"""MCP accounts for their owners: enable, regenerate the key, usage history and summary."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from sqlalchemy import Integer, Select, case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tollgate.accounts import credits
from tollgate.accounts.keys import KeyStore, NewKey, generate_key, key_store
from tollgate.accounts.models import CreditTransaction, McpAccount, ToolCall, TransactionType
from tollgate.accounts.schemas import ToolUsage, UsageSummaryResponse
from tollgate.core.clock import first_of_next_month, month_key, start_of_day, start_of_month
from tollgate.core.database import after_commit, database_now
from tollgate.core.errors import McpAlreadyEnabled, McpNotEnabled, NotFound
from tollgate.core.runtime import Runtime
from tollgate.core.settings import Settings
from tollgate.identity.models import User


async def find_account_for_user(session: AsyncSession, user_id: int) -> McpAccount | None:
    """The user's MCP account, if MCP is enabled for them."""
    query = select(McpAccount).where(McpAccount.user_id == user_id)
    return (await session.execute(query)).scalar_one_or_none()


async def account_for_user(session: AsyncSession, user_id: int) -> McpAccount:
    """The user's MCP account, or ``mcp_not_enabled``."""
    account = await find_account_for_user(session, user_id)
    if account is None:
        raise McpNotEnabled
    return account


async def get_account(session: AsyncSession, account_id: int) -> McpAccount:
    """The account with ``account_id``, or NotFound."""
    account = await session.get(McpAccount, account_id)
    if account is None:
        raise NotFound("MCP account not found", code="account_not_found")
    return account


async def list_accounts(
    session: AsyncSession, *, email: str | None = None, limit: int = 100, offset: int = 0
) -> tuple[int, Sequence[McpAccount]]:
    """Accounts, oldest first (those whose owner's email contains ``email``, when given),
    and how many match."""
    where = (
        [McpAccount.user_email.contains(email.strip().lower(), autoescape=True)] if email else []
    )
    total = (await session.execute(select(func.count(McpAccount.id)).where(*where))).scalar_one()
    query = select(McpAccount).where(*where).order_by(McpAccount.id).limit(limit).offset(offset)
    return int(total), (await session.execute(query)).scalars().all()


async def grant_credits(
    session: AsyncSession,
    account_id: int,
    amount: int,
    *,
    reason: str,
    actor: str,
    request_key: str | None = None,
) -> credits.LedgerResult:
    """An operator's change of an account's balance (negative takes credits), with its
    reason, as an adjustment ledger row; the same ``request_key`` again changes nothing."""
    await get_account(session, account_id)
    return await credits.adjust(
        session,
        account_id,
        amount,
        reason=reason,
        actor=actor,
        idempotency_key=f"{account_id}:{request_key or secrets.token_hex(16)}",
    )


@dataclass(frozen=True)
class EnabledAccount:
    """A new account and its key, whose full value is shown this once."""

    account: McpAccount
    key: NewKey


async def enable(session: AsyncSession, user: User, settings: Settings) -> EnabledAccount:
    """Create the user's MCP account on the default tier, with its first allocation."""
    if await find_account_for_user(session, user.id) is not None:
        raise McpAlreadyEnabled
    key = generate_key()
    tier_name = settings.default_tier
    allocation = settings.tier(tier_name).monthly_allocation
    period = month_key(await database_now(session))
    account = McpAccount(
        user_id=user.id,
        user_email=user.email,
        display_name=user.display_name,
        mcp_key_hash=key.hash,
        mcp_key_prefix=key.prefix,
        credits_balance=allocation,
        credits_tier=tier_name,
        credits_monthly_allocation=allocation,
        refill_period=period,
        is_active=True,
        total_tool_calls=0,
        total_credits_used=0,
    )
    session.add(account)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise McpAlreadyEnabled from exc
    session.add(
        CreditTransaction(
            account_id=account.id,
            transaction_type=TransactionType.MONTHLY_REFILL,
            amount=allocation,
            balance_before=0,
            balance_after=allocation,
            idempotency_key=f"monthly_refill:{account.id}:{period}",
            reference_type="system",
            description=f"Initial {tier_name} tier allocation",
            created_by="system",
        )
    )
    await session.flush()
    await session.refresh(account)
    return EnabledAccount(account=account, key=key)


async def regenerate_key(session: AsyncSession, account: McpAccount, keys: KeyStore) -> NewKey:
    """Replace the account's key; the old one is refused everywhere once this commits."""
    old_hash = account.mcp_key_hash
    key = generate_key()
    account.mcp_key_hash = key.hash
    account.mcp_key_prefix = key.prefix
    await session.flush()
    after_commit(session, lambda: keys.revoke(old_hash))
    return key


def _calls_query(
    account_id: int, days_start: object, tool_name: str | None, success_only: bool
) -> Select[ToolCall]:
    query = select(ToolCall).where(
        ToolCall.account_id == account_id, ToolCall.created_at > days_start
    )
    if tool_name:
        query = query.where(ToolCall.tool_name == tool_name)
    if success_only:
        query = query.where(ToolCall.success.is_(True))
    return query


async def usage_history(
    session: AsyncSession,
    account_id: int,
    *,
    days: int,
    tool_name: str | None,
    success_only: bool,
    limit: int,
    offset: int,
) -> tuple[int, list[ToolCall]]:
    """The account's calls of the last ``days`` days, newest first, and their count."""
    since = await database_now(session) - timedelta(days=days)
    query = _calls_query(account_id, since, tool_name, success_only)
    total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    page = (
        query.order_by(ToolCall.created_at.desc(), ToolCall.id.desc()).limit(limit).offset(offset)
    )
    return total, list((await session.execute(page)).scalars())


async def usage_summary(session: AsyncSession, account: McpAccount) -> UsageSummaryResponse:
    """Today's and this month's calls and credits, success rate, latency, per-tool counts."""
    now = await database_now(session)
    day_start, month_start = start_of_day(now), start_of_month(now)
    mine = ToolCall.account_id == account.id
    today = (
        await session.execute(
            select(func.count(), func.coalesce(func.sum(ToolCall.credits_charged), 0)).where(
                mine, ToolCall.created_at >= day_start
            )
        )
    ).one()
    month = (
        await session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(ToolCall.credits_charged), 0),
                func.coalesce(func.sum(case((ToolCall.success.is_(True), 1), else_=0)), 0),
                func.avg(ToolCall.latency_ms),
            ).where(mine, ToolCall.created_at >= month_start)
        )
    ).one()
    breakdown = await session.execute(
        select(
            ToolCall.tool_name,
            func.count().label("calls"),
            func.coalesce(func.sum(ToolCall.credits_charged), 0).cast(Integer).label("credits"),
        )
        .where(mine, ToolCall.created_at >= month_start)
        .group_by(ToolCall.tool_name)
        .order_by(func.count().desc(), ToolCall.tool_name)
    )
    calls_month, successful = int(month[0]), int(month[2])
    today_date = now.date()
    return UsageSummaryResponse(
        credits_balance=account.credits_balance,
        credits_tier=account.credits_tier,
        credits_monthly_allocation=account.credits_monthly_allocation,
        credits_used_today=int(today[1]),
        credits_used_this_month=int(month[1]),
        total_calls_today=int(today[0]),
        total_calls_this_month=calls_month,
        success_rate=round(successful / calls_month * 100, 1) if calls_month else 100.0,
        avg_latency_ms=round(float(month[3] or 0), 1),
        tool_breakdown=[
            ToolUsage(tool=row.tool_name, calls=row.calls, credits=row.credits) for row in breakdown
        ],
        days_until_refill=(first_of_next_month(today_date) - today_date).days,
    )


async def set_account_active(
    session: AsyncSession, account: McpAccount, active: bool, keys: KeyStore
) -> McpAccount:
    """Switch an account on or off; a disabled account's key is refused at once."""
    account.is_active = active
    await session.flush()
    key_hash = account.mcp_key_hash
    after_commit(session, lambda: keys.revoke(key_hash) if not active else keys.forget(key_hash))
    return account


async def keys_follow_their_user(
    session: AsyncSession, runtime: Runtime, user_id: int, active: bool
) -> None:
    """A deactivated or deleted user's account keys are refused at once in every process
    (a reactivated user's are looked up afresh): the same tombstone as key regeneration."""
    keys = key_store(runtime)
    hashes = await session.execute(
        select(McpAccount.mcp_key_hash).where(McpAccount.user_id == user_id)
    )
    for key_hash in hashes.scalars():
        after_commit(session, partial(keys.forget if active else keys.revoke, key_hash))
