"""Credit holds: tool calls reserved in memory against credits drawn from the balance in blocks.

A database transaction per call to reserve its credits was the hot path's largest cost. Instead
a process draws a block of an account's credits into a hold (one short transaction:
``mcp_accounts.credits_held`` goes up by the block and the process's ``credit_holds`` row
records it) and reserves calls against the block in memory. The settler writes each charge with
its call record and takes it out of the balance and the hold in the same transaction, so the
ledger still sums to the balance. Unused credits go back when a hold is idle, at shutdown, and
after a crash, when the process is found dead (:func:`release_dead_holds`).

Exactness across processes: what may still be drawn is the balance minus what every process
holds, and a draw is a conditional update, so no credit is spent twice and the balance never
goes below zero. Near the end of a balance blocks shrink to one call's cost; a process that
finds nothing left while others hold credits asks them (through the cache) to give back what
they do not use and waits briefly, so a call is refused only when no credit is left anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tollgate.accounts.credits import account_inactive, not_enough_credits
from tollgate.accounts.models import CreditHold, McpAccount
from tollgate.core.cache import Cache
from tollgate.core.database import database_now, transaction, utcnow
from tollgate.core.errors import NotFound
from tollgate.core.instances import is_alive

logger = logging.getLogger(__name__)

RELEASE_CHANNEL = "credit-holds:release"
"""Where a process that ran out asks the others to give back an account's unused credits."""

BLOCK_MODE_FACTOR = 4
"""Blocks are drawn while the account has this many blocks available; below, one call's cost."""

RELEASE_WAIT_STEPS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.5, 0.5, 1.0, 1.0)
"""Pauses between draws while other processes hold the account's last credits."""

TOUCH_INTERVAL_SECONDS = 10.0
"""A process marks its hold rows as alive this often."""

DEAD_HOLD_SECONDS = 3 * TOUCH_INTERVAL_SECONDS
"""A hold row untouched this long belongs to a dead process (even without a shared cache)."""


@dataclass
class _Hold:
    """This process's credits of one account: ``free`` to reserve, ``reserved`` by calls in
    flight. Their sum is the process's ``credit_holds`` row."""

    free: int = 0
    reserved: int = 0
    drawn_at: float = 0.0
    used_at: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    refreshing: asyncio.Task[None] | None = None


class CreditHolds:
    """Reserves calls' credits in memory from blocks drawn from the database."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        cache: Cache,
        instance_id: str,
        *,
        block: int,
        hold_seconds: float,
    ) -> None:
        self._sessions = sessions
        self._cache = cache
        self.instance_id = instance_id
        self._block = block
        self._hold_seconds = hold_seconds
        self._holds: dict[int, _Hold] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start giving back idle credits and answering other processes' requests for them."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._release_idle(), name="credit-holds-idle"),
                asyncio.create_task(self._answer_requests(), name="credit-holds-requests"),
                asyncio.create_task(self._touch_rows(), name="credit-holds-touch"),
            ]

    async def stop(self) -> None:
        """Give every unused credit back (calls still in flight keep theirs)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for account_id in list(self._holds):
            await self.release(account_id)

    async def take(self, account_id: int, cost: int) -> None:
        """Reserve ``cost`` credits for one call: InsufficientCredits when no credit is left
        anywhere, Forbidden for a disabled account, NotFound for a missing one."""
        hold = self._holds.setdefault(account_id, _Hold())
        now = time.monotonic()
        if not (hold.free >= cost and now - hold.drawn_at < self._hold_seconds):
            await self._take_slowly(account_id, hold, cost)
        hold.free -= cost
        hold.reserved += cost
        hold.used_at = now
        self._refresh_ahead(account_id, hold, now)

    def settled(self, account_id: int, cost: int, *, charged: bool) -> None:
        """A reserved call ended: its credits were charged (the settler took them out of the
        hold), or they are free again (refunded, or never recorded)."""
        hold = self._holds.setdefault(account_id, _Hold())
        hold.reserved -= cost
        if not charged:
            hold.free += cost

    def held(self, account_id: int) -> tuple[int, int]:
        """This process's free and reserved credits of an account."""
        hold = self._holds.get(account_id)
        return (hold.free, hold.reserved) if hold is not None else (0, 0)

    async def release(self, account_id: int) -> None:
        """Give an account's unused credits back to its balance now."""
        hold = self._holds.get(account_id)
        if hold is None:
            return
        async with hold.lock:
            await self._give_back(account_id, hold)
            if hold.reserved == 0 and hold.free == 0:
                self._holds.pop(account_id, None)

    async def _take_slowly(self, account_id: int, hold: _Hold, cost: int) -> None:
        async with hold.lock:
            if hold.free >= cost and time.monotonic() - hold.drawn_at < self._hold_seconds:
                return  # another call refreshed the hold meanwhile
            for pause in (*RELEASE_WAIT_STEPS, None):
                available, others = await self._refresh(account_id, hold, cost)
                if hold.free >= cost:
                    return
                if others == 0 or pause is None:
                    raise not_enough_credits(cost, available + hold.free)
                await self._cache.publish(RELEASE_CHANNEL, str(account_id))
                await asyncio.sleep(pause)

    def _refresh_ahead(self, account_id: int, hold: _Hold, now: float) -> None:
        """Draw the next block in the background before this one runs dry or goes stale."""
        running = hold.refreshing is not None and not hold.refreshing.done()
        low = hold.free < max(self._block // 4, 1)
        stale = now - hold.drawn_at > self._hold_seconds / 2
        if running or not (low or stale):
            return
        hold.refreshing = asyncio.create_task(self._refresh_in_background(account_id, hold))

    async def _refresh_in_background(self, account_id: int, hold: _Hold) -> None:
        try:
            async with hold.lock:
                await self._refresh(account_id, hold, 0)
        except Exception as exc:  # the next call draws (and reports) for itself
            logger.debug("background draw for account %s failed: %s", account_id, exc)

    async def _refresh(self, account_id: int, hold: _Hold, need: int) -> tuple[int, int]:
        """Check the account, draw what this process should hold now, and renew the hold.

        Returns what was still free to draw before and what other processes hold.
        """
        async with transaction(self._sessions) as session:
            row = (
                await session.execute(
                    select(
                        McpAccount.is_active, McpAccount.credits_balance, McpAccount.credits_held
                    )
                    .where(McpAccount.id == account_id)
                    .with_for_update()  # PostgreSQL: the draw below decides on what this read
                )
            ).first()
            if row is None:
                raise NotFound("MCP account not found", code="account_not_found")
            if not row.is_active:
                raise account_inactive()
            available = row.credits_balance - row.credits_held
            others = max(row.credits_held - hold.free - hold.reserved, 0)
            draw = self._draw_size(available, hold.free, need)
            if draw > 0:
                await _draw(session, self.instance_id, account_id, draw)
        hold.free += draw
        hold.drawn_at = time.monotonic()
        return available, others

    def _draw_size(self, available: int, free: int, need: int) -> int:
        """Top the hold up to a block while the account has plenty; near its end draw only
        what the call lacks."""
        if available >= BLOCK_MODE_FACTOR * self._block:
            return max(self._block - free, need - free, 0)
        missing = need - free
        return missing if 0 < missing <= available else 0

    async def _give_back(self, account_id: int, hold: _Hold) -> None:
        amount, hold.free = hold.free, 0
        if amount == 0:
            return
        try:
            async with transaction(self._sessions) as session:
                await _return(session, self.instance_id, account_id, amount)
        except Exception:
            hold.free += amount
            raise

    async def _release_idle(self) -> None:
        while True:
            await asyncio.sleep(max(self._hold_seconds / 2, 0.05))
            cutoff = time.monotonic() - self._hold_seconds
            for account_id, hold in list(self._holds.items()):
                if hold.used_at < cutoff and not hold.lock.locked():
                    await self._release_quietly(account_id)

    async def _answer_requests(self) -> None:
        while True:
            try:
                async with self._cache.subscribe(RELEASE_CHANNEL) as messages:
                    async for message in messages:
                        if message.isdigit() and self.held(int(message))[0] > 0:
                            await self._release_quietly(int(message))
            except Exception:
                logger.warning("listening for credit release requests failed; retrying")
                await asyncio.sleep(1.0)

    async def _release_quietly(self, account_id: int) -> None:
        try:
            await self.release(account_id)
        except Exception:
            logger.exception("could not give back the credits held for account %s", account_id)

    async def _touch_rows(self) -> None:
        while True:
            await asyncio.sleep(TOUCH_INTERVAL_SECONDS)
            try:
                async with transaction(self._sessions) as session:
                    await session.execute(
                        update(CreditHold)
                        .where(CreditHold.instance_id == self.instance_id)
                        .values(updated_at=utcnow())
                    )
            except Exception:
                logger.warning("could not mark this process's credit holds alive")


def _upsert_hold(session: AsyncSession, instance_id: str, account_id: int, amount: int) -> object:
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(CreditHold).values(
        instance_id=instance_id, account_id=account_id, amount=amount
    )
    return statement.on_conflict_do_update(
        index_elements=["instance_id", "account_id"],
        set_={"amount": CreditHold.amount + statement.excluded.amount, "updated_at": utcnow()},
    )


async def _draw(session: AsyncSession, instance_id: str, account_id: int, amount: int) -> None:
    """Move ``amount`` of the balance into this process's hold (the caller checked it)."""
    available = McpAccount.credits_balance - McpAccount.credits_held
    moved = await session.execute(
        update(McpAccount)
        .where(McpAccount.id == account_id, available >= amount)
        .values(credits_held=McpAccount.credits_held + amount)
        .returning(McpAccount.id)
    )
    if moved.first() is None:  # only under BEGIN IMMEDIATE's lock or a row lock: not a race
        raise RuntimeError("the account's available credits changed during a draw")
    await session.execute(_upsert_hold(session, instance_id, account_id, amount))  # type: ignore[call-overload]


async def _return(session: AsyncSession, instance_id: str, account_id: int, amount: int) -> None:
    """Give ``amount`` of this process's hold back to the account's balance."""
    await session.execute(
        update(McpAccount)
        .where(McpAccount.id == account_id)
        .values(credits_held=McpAccount.credits_held - amount)
    )
    await session.execute(
        update(CreditHold)
        .where(CreditHold.instance_id == instance_id, CreditHold.account_id == account_id)
        .values(amount=CreditHold.amount - amount)
    )


async def release_dead_holds(
    sessions: async_sessionmaker[AsyncSession],
    cache: Cache,
    own_instance_id: str,
    *,
    untouched_seconds: float = DEAD_HOLD_SECONDS,
) -> int:
    """Give back the credits held by processes that are gone: not heartbeating and their
    rows untouched for ``untouched_seconds``. Returns how many credits came back."""
    released = 0
    async with transaction(sessions) as session:
        cutoff = await database_now(session) - timedelta(seconds=untouched_seconds)
        rows = (
            await session.execute(
                select(CreditHold).where(
                    CreditHold.instance_id != own_instance_id, CreditHold.updated_at < cutoff
                )
            )
        ).scalars()
        for hold in list(rows):
            if await is_alive(cache, hold.instance_id):
                continue
            await session.execute(
                update(McpAccount)
                .where(McpAccount.id == hold.account_id)
                .values(credits_held=McpAccount.credits_held - hold.amount)
            )
            await session.execute(
                delete(CreditHold).where(
                    CreditHold.instance_id == hold.instance_id,
                    CreditHold.account_id == hold.account_id,
                )
            )
            released += hold.amount
    if released:
        logger.warning("gave back %d credits held by processes no longer alive", released)
    return released
