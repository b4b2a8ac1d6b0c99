"""Tool-call records and their outcomes.

The gateway reserves a call's credits in memory (:mod:`tollgate.accounts.holds`) and, once it
ended, the settler writes its record and, unless it is refunded, its charge, in one group
commit before the answer is sent. A backend failure is refunded (never charged); a tool's own
error is not; a call the client cancelled is refunded and recorded as ``cancelled``.

Records written pending with a separate charge come from earlier versions (and from
:func:`reserve_call`, kept for them): a call left pending by a crash never answered, and is
settled at the next start as a refunded backend error.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import insert, or_, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession

from tollgate.accounts import credits
from tollgate.accounts.models import CallStatus, CreditTransaction, ToolCall
from tollgate.core import rawsql
from tollgate.core.database import table_of, utcnow

_CALL_COLUMNS = (
    "request_id",
    "account_id",
    "upstream",
    "tool_name",
    "credits_cost",
    "credits_charged",
    "status",
    "instance_id",
    "success",
    "is_backend_error",
    "error_code",
    "latency_ms",
)
_LEDGER_COLUMNS = (
    "account_id",
    "transaction_type",
    "amount",
    "balance_before",
    "balance_after",
    "idempotency_key",
    "reference_type",
    "reference_id",
    "description",
)


@functools.cache
def _inserts(dialect: Dialect) -> tuple[rawsql.Statement, rawsql.Statement]:
    """The settler's two inserts for ``dialect``, built once (see ``core.rawsql``)."""
    clock = {"settled_at": rawsql.sql_text(utcnow(), dialect)}
    calls = rawsql.insert(table_of(ToolCall), _CALL_COLUMNS, dialect, clock)
    return calls, rawsql.insert(table_of(CreditTransaction), _LEDGER_COLUMNS, dialect)


ABANDONED_ERROR_CODE = "abandoned"
"""Error code of calls found pending at start-up: the process died while they ran."""

CANCELLED_ERROR_CODE = "cancelled"
"""Error code of calls the client cancelled before their answer."""


@dataclass(frozen=True)
class CallRecord:
    """One ended call as the settler writes it: who made it, what it cost, how it went."""

    request_id: str
    account_id: int
    tool_name: str
    upstream: str | None
    cost: int
    instance_id: str
    outcome: CallOutcome

    @property
    def charged(self) -> int:
        """The credits the call is charged: its cost, or nothing when refunded."""
        return 0 if self.outcome.refunded else self.cost


@dataclass(frozen=True)
class CallOutcome:
    """How a tool call ended."""

    request_id: str
    success: bool
    is_backend_error: bool = False
    error_code: str | None = None
    latency_ms: float | None = None
    cancelled: bool = False

    @property
    def refunded(self) -> bool:
        """A backend failure, or a call cancelled before its answer, costs nothing."""
        return self.is_backend_error or self.cancelled


def _row(record: CallRecord) -> dict[str, object]:
    outcome = record.outcome
    return {
        "request_id": record.request_id,
        "account_id": record.account_id,
        "upstream": record.upstream,
        "tool_name": record.tool_name,
        "credits_cost": record.cost,
        "credits_charged": record.charged,
        "status": (CallStatus.CANCELLED if outcome.cancelled else CallStatus.SETTLED).value,
        "instance_id": record.instance_id,
        "success": outcome.success,
        "is_backend_error": outcome.is_backend_error,
        "error_code": outcome.error_code,
        "latency_ms": outcome.latency_ms,
    }


def record_calls(dialect: Dialect, records: Sequence[CallRecord]) -> rawsql.Steps[None]:
    """Write ended calls and their charges, taken from the balance and from the credits
    their process held for them, in one transaction (a few statements per batch, whatever
    its size). The settler runs it through :meth:`SyncWrites.run_steps`."""
    insert_calls, insert_ledger = _inserts(dialect)
    yield rawsql.RunMany(insert_calls, [_row(r) for r in records])
    by_account: dict[int, list[CallRecord]] = defaultdict(list)
    for record in records:
        by_account[record.account_id].append(record)
    held = credits.held_charge_sql(dialect)
    charges: list[dict[str, object]] = []
    for account_id, ended in by_account.items():
        charges += yield from credits.charge_held(
            held,
            account_id,
            ended[0].instance_id,
            [credits.HeldCharge(r.request_id, r.tool_name, r.charged) for r in ended],
        )
    yield rawsql.RunMany(insert_ledger, charges)


async def reserve_call(
    session: AsyncSession,
    account_id: int,
    *,
    request_id: str,
    tool_name: str,
    upstream: str | None,
    cost: int,
    instance_id: str | None = None,
) -> credits.LedgerResult:
    """Charge the call and record it as pending, in the caller's transaction."""
    result = await credits.charge(
        session, account_id, cost, request_id=request_id, tool_name=tool_name
    )
    if not result.replayed:
        await session.execute(
            insert(ToolCall).values(
                request_id=request_id,
                account_id=account_id,
                upstream=upstream,
                tool_name=tool_name,
                credits_cost=cost,
                credits_charged=cost,
                status=CallStatus.PENDING.value,
                success=False,
                is_backend_error=False,
                instance_id=instance_id,
            )
        )
    return result


async def settle_call(session: AsyncSession, outcome: CallOutcome) -> bool:
    """Record a pending call's outcome, refunding a backend error or a cancelled call.

    False if the call was not pending (settled already: nothing changes).
    """
    values: dict[str, object] = {
        "status": CallStatus.CANCELLED if outcome.cancelled else CallStatus.SETTLED,
        "success": outcome.success,
        "is_backend_error": outcome.is_backend_error,
        "error_code": outcome.error_code,
        "latency_ms": outcome.latency_ms,
        "settled_at": utcnow(),
    }
    if outcome.refunded:
        values["credits_charged"] = 0
    settled = await session.execute(
        update(ToolCall)
        .where(ToolCall.request_id == outcome.request_id, ToolCall.status == CallStatus.PENDING)
        .values(**values)
        .returning(ToolCall.id)
    )
    if settled.first() is None:
        return False
    if outcome.refunded:
        await credits.refund(session, outcome.request_id, reason=outcome.error_code or "backend")
    return True


async def pending_instances(session: AsyncSession) -> set[str | None]:
    """The processes that have calls pending (None for calls recorded without one)."""
    query = select(ToolCall.instance_id).where(ToolCall.status == CallStatus.PENDING).distinct()
    return set((await session.execute(query)).scalars())


async def settle_abandoned_calls(session: AsyncSession, keep: Collection[str] = ()) -> int:
    """Settle pending calls as refunded backend errors, except those of live processes.

    ``keep`` names the processes still alive: their calls may yet finish.
    """
    query = select(ToolCall.request_id).where(ToolCall.status == CallStatus.PENDING)
    if keep:
        query = query.where(
            or_(ToolCall.instance_id.is_(None), ToolCall.instance_id.not_in(list(keep)))
        )
    pending = (await session.execute(query)).scalars().all()
    for request_id in pending:
        await settle_call(
            session,
            CallOutcome(
                request_id=request_id,
                success=False,
                is_backend_error=True,
                error_code=ABANDONED_ERROR_CODE,
            ),
        )
    return len(pending)
