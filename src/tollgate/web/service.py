"""What the pages show, gathered from the parts' own services (no logic of their own)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tollgate.accounts import credits
from tollgate.accounts import service as accounts
from tollgate.accounts.models import CreditTransaction, McpAccount, ToolCall
from tollgate.accounts.schemas import UsageSummaryResponse

LEDGER_ROWS = 20
USAGE_ROWS = 50
USAGE_DAYS = 30
CHART_DAYS = 14
"""The portal shows the last rows of the ledger and of the usage, and a chart of 14 days."""


@dataclass
class Portal:
    """The user portal's content."""

    account: McpAccount | None
    summary: UsageSummaryResponse | None = None
    ledger: list[CreditTransaction] = field(default_factory=list)
    calls: list[ToolCall] = field(default_factory=list)
    chart: dict[str, Any] = field(default_factory=dict)


def calls_per_day(calls: list[ToolCall], days: int, today: datetime) -> dict[str, Any]:
    """Calls of each of the last ``days`` days (UTC): labels and counts for the chart."""
    counts = Counter(call.created_at.astimezone(UTC).date() for call in calls)
    dates = [(today - timedelta(days=n)).date() for n in reversed(range(days))]
    return {"labels": [d.isoformat() for d in dates], "calls": [counts[d] for d in dates]}


async def portal(session: AsyncSession, user_id: int) -> Portal:
    """The user's account, usage summary, recent ledger rows and calls."""
    account = await accounts.find_account_for_user(session, user_id)
    if account is None:
        return Portal(account=None)
    _, ledger = await credits.ledger(session, account.id, limit=LEDGER_ROWS, offset=0)
    _, calls = await accounts.usage_history(
        session,
        account.id,
        days=USAGE_DAYS,
        tool_name=None,
        success_only=False,
        limit=USAGE_ROWS,
        offset=0,
    )
    return Portal(
        account=account,
        summary=await accounts.usage_summary(session, account),
        ledger=list(ledger),
        calls=calls,
        chart=calls_per_day(calls, CHART_DAYS, datetime.now(UTC)),
    )


@dataclass(frozen=True)
class Window:
    """Which rows of a long list a page shows, for its pager: ``shown`` rows from
    ``offset``, of ``total`` (None when only ``more`` says whether rows follow)."""

    offset: int
    limit: int
    shown: int
    total: int | None = None
    more: bool = False

    @property
    def first(self) -> int:
        """The position of the first row shown (1-based; 0 when none is)."""
        return self.offset + 1 if self.shown else 0

    @property
    def last(self) -> int:
        """The position of the last row shown."""
        return self.offset + self.shown

    @property
    def previous(self) -> int | None:
        """The offset of the page before this one, if any."""
        return max(0, self.offset - self.limit) if self.offset else None

    @property
    def next(self) -> int | None:
        """The offset of the page after this one, if any."""
        follows = self.more if self.total is None else self.last < self.total
        return self.last if follows else None
