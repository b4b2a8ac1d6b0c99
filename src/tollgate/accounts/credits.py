"""Credits: every change is a ledger row written with a conditional balance update.

Each function is idempotent per key: the ledger's unique ``idempotency_key`` makes a second
attempt with the same request id return the first result instead of moving credits again.
A balance can never go below zero: updates are conditional, and the table checks it too.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import (
    ColumnElement,
    Insert,
    case,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession

from tollgate.accounts.models import CreditTransaction, McpAccount, TransactionType
from tollgate.core import rawsql
from tollgate.core.database import utc_month, utcnow
from tollgate.core.errors import Conflict, Forbidden, InsufficientCredits, NotFound


@dataclass(frozen=True)
class LedgerResult:
    """What a credits operation did: the amount moved and the balance it left."""

    amount: int
    balance_after: int
    replayed: bool = False


def _result(entry: CreditTransaction, replayed: bool) -> LedgerResult:
    return LedgerResult(amount=entry.amount, balance_after=entry.balance_after, replayed=replayed)


def _replay(entry: CreditTransaction, account_id: int) -> LedgerResult:
    """The first result again, unless the key was spent by another account."""
    if entry.account_id != account_id:
        raise Conflict(
            "This idempotency key was already used for another account",
            code="idempotency_key_reused",
        )
    return _result(entry, replayed=True)


async def find_entry(session: AsyncSession, idempotency_key: str) -> CreditTransaction | None:
    """The ledger row written under ``idempotency_key``, if any."""
    query = select(CreditTransaction).where(CreditTransaction.idempotency_key == idempotency_key)
    return (await session.execute(query)).scalar_one_or_none()


def _insert_once(session: AsyncSession, values: dict[str, object]) -> Insert:
    """INSERT of a ledger row that does nothing when its idempotency key exists."""
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    return (
        insert(CreditTransaction)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(CreditTransaction.id)
    )


async def _apply(
    session: AsyncSession,
    account_id: int,
    amount: int,
    *,
    idempotency_key: str,
    transaction_type: TransactionType,
    counters: dict[str, int] | None = None,
    reference_type: str | None = None,
    reference_id: str | None = None,
    description: str | None = None,
    created_by: str | None = None,
    require_active: bool = False,
) -> LedgerResult:
    """Move ``amount`` credits (negative to take) and write the ledger row, atomically.

    Optimistic: the conditional balance update and the ledger insert run first (two
    statements on the hot path). If the key had been used, the insert does nothing; the
    update is then undone in the same transaction and the first result is reported.
    ``counters`` are account columns incremented with the move (and undone with it).
    """
    counters = counters or {}
    # Credits held by a process for calls it reserves in memory are not free to take.
    available = McpAccount.credits_balance - McpAccount.credits_held
    conditions = [McpAccount.id == account_id, available + amount >= 0]
    if require_active:
        conditions.append(McpAccount.is_active.is_(True))
    moved = await session.execute(
        update(McpAccount)
        .where(*conditions)
        .values(_moves(amount, counters, sign=1))
        .returning(McpAccount.credits_balance)
    )
    balance_after = moved.scalar_one_or_none()
    if balance_after is None:
        existing = await find_entry(session, idempotency_key)
        if existing is not None:
            return _replay(existing, account_id)
        raise await _refusal(session, account_id, amount)
    inserted = await session.execute(
        _insert_once(
            session,
            {
                "account_id": account_id,
                "transaction_type": transaction_type.value,
                "amount": amount,
                "balance_before": balance_after - amount,
                "balance_after": balance_after,
                "idempotency_key": idempotency_key,
                "reference_type": reference_type,
                "reference_id": reference_id,
                "description": description,
                "created_by": created_by,
            },
        )
    )
    if inserted.scalar_one_or_none() is not None:
        return LedgerResult(amount=amount, balance_after=balance_after)
    await session.execute(
        update(McpAccount)
        .where(McpAccount.id == account_id)
        .values(_moves(amount, counters, sign=-1))
    )
    existing = await find_entry(session, idempotency_key)
    assert existing is not None
    return _replay(existing, account_id)


def _moves(amount: int, counters: dict[str, int], *, sign: int) -> dict[str, ColumnElement[int]]:
    columns = McpAccount.__table__.c
    values: dict[str, ColumnElement[int]] = {
        "credits_balance": columns.credits_balance + sign * amount
    }
    for name, step in counters.items():
        values[name] = columns[name] + sign * step
    return values


async def _refusal(session: AsyncSession, account_id: int, amount: int) -> Exception:
    query = select(
        McpAccount.is_active, McpAccount.credits_balance - McpAccount.credits_held
    ).where(McpAccount.id == account_id)
    row = (await session.execute(query)).first()
    if row is None:
        return NotFound("MCP account not found", code="account_not_found")
    if not row[0]:
        return account_inactive()
    return not_enough_credits(-amount, row[1])


def account_inactive() -> Forbidden:
    """The refusal of a call on a disabled account."""
    return Forbidden("This MCP account is disabled", code="account_inactive")


def not_enough_credits(needed: int, available: int) -> InsufficientCredits:
    """The refusal of a call the account cannot pay for."""
    return InsufficientCredits(
        f"Not enough credits: {needed} needed, {available} available",
        extra={"credits_needed": needed, "credits_balance": available},
    )


def charge_key(request_id: str) -> str:
    """The ledger key of a tool call's charge."""
    return f"tool_call:{request_id}"


async def charge(
    session: AsyncSession, account_id: int, cost: int, *, request_id: str, tool_name: str
) -> LedgerResult:
    """Take ``cost`` credits for one tool call; InsufficientCredits leaves nothing changed."""
    if cost < 0:
        raise ValueError("a charge cannot be negative")
    return await _apply(
        session,
        account_id,
        -cost,
        idempotency_key=charge_key(request_id),
        transaction_type=TransactionType.TOOL_CALL,
        counters={"total_tool_calls": 1, "total_credits_used": cost},
        reference_type="tool_call",
        reference_id=request_id,
        description=f"Tool call {tool_name}",
        require_active=True,
    )


@dataclass(frozen=True)
class HeldCharge:
    """One ended call's charge (0 when refunded), reserved from a process's hold."""

    request_id: str
    tool_name: str
    amount: int


_CHARGE_ACCOUNT = (
    "UPDATE mcp_accounts SET credits_balance = credits_balance - :total, "
    "credits_held = credits_held - :total, total_tool_calls = total_tool_calls + :count, "
    "total_credits_used = total_credits_used + :total WHERE id = :account "
    "RETURNING credits_balance"
)
_TAKE_FROM_HOLD = (
    "UPDATE credit_holds SET amount = amount - :total, updated_at = {clock} "
    "WHERE instance_id = :instance AND account_id = :account"
)


@dataclass(frozen=True)
class HeldChargeSql:
    """The two updates of :func:`charge_held` in one dialect (see ``core.rawsql``)."""

    charge_account: rawsql.Statement
    take_from_hold: rawsql.Statement


@functools.cache
def held_charge_sql(dialect: Dialect) -> HeldChargeSql:
    """:class:`HeldChargeSql` for ``dialect``, built once."""
    clock = rawsql.sql_text(utcnow(), dialect)
    return HeldChargeSql(
        rawsql.statement(_CHARGE_ACCOUNT, dialect),
        rawsql.statement(_TAKE_FROM_HOLD.format(clock=clock), dialect),
    )


def charge_held(
    sql: HeldChargeSql, account_id: int, instance_id: str, ended: Sequence[HeldCharge]
) -> rawsql.Steps[list[dict[str, object]]]:
    """Take ended calls' charges out of the account's balance and the process's hold, and
    count the calls, in the caller's transaction; returns their ledger rows (for one
    multi-row insert by the caller).

    The account row stays locked until the transaction ends, so the rows' balances follow
    one another exactly.
    """
    total = sum(charge.amount for charge in ended)
    amounts = {"account": account_id, "total": total, "count": len(ended)}
    row = yield rawsql.Run(sql.charge_account, amounts, returns=True)
    assert row is not None, "the account of a held charge exists"
    if total:
        yield rawsql.Run(sql.take_from_hold, {**amounts, "instance": instance_id})
    return _ledger_rows(account_id, int(row[0]) + total, ended)


def _ledger_rows(
    account_id: int, balance: int, ended: Sequence[HeldCharge]
) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for charge in ended:
        if not charge.amount:
            continue
        rows.append(
            {
                "account_id": account_id,
                "transaction_type": TransactionType.TOOL_CALL.value,
                "amount": -charge.amount,
                "balance_before": balance,
                "balance_after": balance - charge.amount,
                "idempotency_key": charge_key(charge.request_id),
                "reference_type": "tool_call",
                "reference_id": charge.request_id,
                "description": f"Tool call {charge.tool_name}",
            }
        )
        balance -= charge.amount
    return rows


async def refund(
    session: AsyncSession, request_id: str, *, reason: str = "backend error"
) -> LedgerResult | None:
    """Give back what a tool call was charged; None when it was never charged."""
    charged = await find_entry(session, charge_key(request_id))
    if charged is None:
        return None
    amount = -charged.amount
    return await _apply(
        session,
        charged.account_id,
        amount,
        idempotency_key=f"refund:{request_id}",
        transaction_type=TransactionType.REFUND,
        counters={"total_credits_used": -amount},
        reference_type="tool_call",
        reference_id=request_id,
        description=f"Refund: {reason}",
    )


async def adjust(
    session: AsyncSession,
    account_id: int,
    amount: int,
    *,
    reason: str,
    actor: str,
    idempotency_key: str,
    transaction_type: TransactionType = TransactionType.ADJUSTMENT,
) -> LedgerResult:
    """An operator's (or a purchase's) change of balance, with its reason."""
    try:
        return await _apply(
            session,
            account_id,
            amount,
            idempotency_key=f"{transaction_type}:{idempotency_key}",
            transaction_type=transaction_type,
            reference_type=transaction_type.value,
            description=reason,
            created_by=actor,
        )
    except InsufficientCredits as exc:
        raise Conflict(
            "This adjustment would take the balance below zero",
            code="balance_would_go_negative",
            extra=exc.extra,
        ) from exc


async def ledger(
    session: AsyncSession, account_id: int, *, limit: int, offset: int
) -> tuple[int, Sequence[CreditTransaction]]:
    """An account's ledger rows, newest first, and how many there are."""
    total = (
        await session.execute(
            select(func.count()).where(CreditTransaction.account_id == account_id)
        )
    ).scalar_one()
    rows = (
        await session.execute(
            select(CreditTransaction)
            .where(CreditTransaction.account_id == account_id)
            .order_by(CreditTransaction.id.desc())
            .limit(limit)
            .offset(offset)
        )
    ).scalars()
    return total, rows.all()


async def refill_account(session: AsyncSession, account_id: int) -> bool:
    """Top one account up to its allocation, once per UTC month (by the database clock).

    The row is locked first (PostgreSQL), and the update only matches an account not yet
    refilled this month, so concurrent runs in many processes refill it exactly once.
    """
    locked = (
        await session.execute(
            select(McpAccount.credits_balance).where(McpAccount.id == account_id).with_for_update()
        )
    ).scalar_one_or_none()
    if locked is None:
        return False
    due = or_(McpAccount.refill_period.is_(None), McpAccount.refill_period < utc_month())
    topped_up = case(
        (
            McpAccount.credits_balance < McpAccount.credits_monthly_allocation,
            McpAccount.credits_monthly_allocation,
        ),
        else_=McpAccount.credits_balance,
    )
    row = (
        await session.execute(
            update(McpAccount)
            .where(McpAccount.id == account_id, McpAccount.is_active.is_(True), due)
            .values(
                credits_balance=topped_up,
                refill_period=utc_month(),
                credits_last_refill=utcnow(),
            )
            .returning(McpAccount.credits_balance, McpAccount.refill_period)
        )
    ).first()
    if row is None:
        return False
    session.add(
        CreditTransaction(
            account_id=account_id,
            transaction_type=TransactionType.MONTHLY_REFILL,
            amount=row.credits_balance - locked,
            balance_before=locked,
            balance_after=row.credits_balance,
            idempotency_key=f"monthly_refill:{account_id}:{row.refill_period}",
            reference_type="system",
            description=f"Monthly allocation for {row.refill_period}",
            created_by="system",
        )
    )
    await session.flush()
    return True


async def accounts_due_for_refill(session: AsyncSession) -> list[int]:
    """Active accounts not yet refilled this UTC month."""
    query = select(McpAccount.id).where(
        McpAccount.is_active.is_(True),
        or_(McpAccount.refill_period.is_(None), McpAccount.refill_period < utc_month()),
    )
    return list((await session.execute(query)).scalars())
