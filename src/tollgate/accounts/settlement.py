"""Settles tool calls durably before their answers are released, in group commits.

The rule (see README, "Crash recovery and credits"): every call whose result a client
received is charged exactly once; every call that never answered is never charged; the
ledger sums to the balance. So a call's record and charge are committed *before* its answer
leaves the process: :meth:`Settler.settle` returns once they are in the database. Records are
written by one background task in group commits (a few multi-row statements per batch):
whatever queued while the previous batch was being written goes into the next transaction,
so concurrent calls share commits and a lone call waits for one. A call in flight when its
process dies has no record and no charge; the credits its process held come back once the
process is found dead.
"""

from __future__ import annotations

import asyncio
import logging

from tollgate.accounts.calls import CallRecord, record_calls
from tollgate.core.batching import BatchWriter
from tollgate.core.database import SyncWrites

logger = logging.getLogger(__name__)

BATCH_SIZE = 200
"""Outcomes written per transaction at most: big enough to amortise the commit."""

BATCH_WINDOW_SECONDS = 0.0
"""No waiting for more outcomes: each waits for its commit before its answer is sent, so a
batch is what queued while the previous one was written (a group commit)."""

RETRY_DELAYS_SECONDS = (0.1, 0.5, 2.0)
"""A failed batch is retried after these pauses; then its calls are given up on (neither
recorded nor charged)."""

Queued = tuple[CallRecord, "asyncio.Future[bool]"]


class Settler:
    """Writes call outcomes in group commits and tells each caller when its one is durable."""

    def __init__(self, writes: SyncWrites) -> None:
        self._writes = writes
        self._writer: BatchWriter[Queued] = BatchWriter(
            "settler", self._write, size=BATCH_SIZE, window=BATCH_WINDOW_SECONDS
        )
        self.start = self._writer.start
        self.flush = self._writer.flush
        self.stop = self._writer.stop

    async def settle(self, record: CallRecord) -> bool:
        """Write ``record``; returns once it is committed (True), or given up on (False:
        the database refused it after retries; the call is then neither recorded nor charged).

        Cancelling the caller does not withdraw the outcome: it is written all the same.
        """
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._writer.submit((record, done))
        return await asyncio.shield(done)

    async def _write(self, batch: list[Queued]) -> None:
        durable = await self._commit([record for record, _ in batch])
        for _, done in batch:
            if not done.done():
                done.set_result(durable)

    async def _commit(self, records: list[CallRecord]) -> bool:
        for delay in (*RETRY_DELAYS_SECONDS, None):
            try:
                await self._writes.run_steps(lambda dialect: record_calls(dialect, records))
                return True
            except Exception:
                if delay is None:
                    logger.exception(
                        "could not record %d calls; they are not charged", len(records)
                    )
                    return False
                logger.warning("recording %d calls failed; retrying in %ss", len(records), delay)
                await asyncio.sleep(delay)
        return False
