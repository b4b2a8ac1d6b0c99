"""Settles tool calls durably before their answers are released, in group commits.

The rule (see README, "Crash recovery and credits"): every call whose result a client
received is charged exactly once; every call that never answered is refunded; the ledger
sums to the balance. So a call's outcome is committed *before* its answer leaves the
process: :meth:`Settler.settle` returns once the outcome is in the database. Outcomes are
written by one background task in group commits: whatever queued while the previous batch
was being written goes into the next transaction, so concurrent calls share commits and a
lone call waits for one. A call still pending after a crash therefore never answered, and
recovery refunds it.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tollgate.accounts.calls import CallOutcome, settle_call
from tollgate.core.batching import BatchWriter
from tollgate.core.database import transaction

logger = logging.getLogger(__name__)

BATCH_SIZE = 200
"""Outcomes written per transaction at most: big enough to amortise the commit."""

BATCH_WINDOW_SECONDS = 0.0
"""No waiting for more outcomes: each waits for its commit before its answer is sent, so a
batch is what queued while the previous one was written (a group commit)."""

RETRY_DELAYS_SECONDS = (0.1, 0.5, 2.0)
"""A failed batch is retried after these pauses; then its calls stay pending for recovery."""

Queued = tuple[CallOutcome, "asyncio.Future[bool]"]


class Settler:
    """Writes call outcomes in group commits and tells each caller when its one is durable."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._writer: BatchWriter[Queued] = BatchWriter(
            "settler", self._write, size=BATCH_SIZE, window=BATCH_WINDOW_SECONDS
        )
        self.start = self._writer.start
        self.flush = self._writer.flush
        self.stop = self._writer.stop

    async def settle(self, outcome: CallOutcome) -> bool:
        """Write ``outcome``; returns once it is committed (True), or given up on (False:
        the database refused it after retries, and the call stays pending for recovery).

        Cancelling the caller does not withdraw the outcome: it is written all the same.
        """
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._writer.submit((outcome, done))
        return await asyncio.shield(done)

    async def _write(self, batch: list[Queued]) -> None:
        durable = await self._commit([outcome for outcome, _ in batch])
        for _, done in batch:
            if not done.done():
                done.set_result(durable)

    async def _commit(self, outcomes: list[CallOutcome]) -> bool:
        for delay in (*RETRY_DELAYS_SECONDS, None):
            try:
                async with transaction(self._sessions) as session:
                    for outcome in outcomes:
                        await settle_call(session, outcome)
                return True
            except Exception:
                if delay is None:
                    logger.exception(
                        "could not settle %d calls; they stay pending until recovered",
                        len(outcomes),
                    )
                    return False
                logger.warning("settling %d calls failed; retrying in %ss", len(outcomes), delay)
                await asyncio.sleep(delay)
        return False
