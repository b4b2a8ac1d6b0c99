"""Settles tool calls in batches, off the request path.

The gateway hands each finished call to :class:`Settler` and answers its client at once; a
background task writes outcomes in batches (one transaction per batch). Stopping flushes
what is queued. Anything a crash leaves pending is settled at the next start.
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

BATCH_WINDOW_SECONDS = 0.02
"""How long the writer waits for more outcomes once one arrived, before writing."""

RETRY_DELAYS_SECONDS = (0.1, 0.5, 2.0)
"""A failed batch is retried after these pauses; then its calls stay pending for recovery."""


class Settler:
    """Queues call outcomes and writes them in batches."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._writer: BatchWriter[CallOutcome] = BatchWriter(
            "settler", self._write, size=BATCH_SIZE, window=BATCH_WINDOW_SECONDS
        )
        self.start = self._writer.start
        self.submit = self._writer.submit
        self.flush = self._writer.flush
        self.stop = self._writer.stop

    async def _write(self, batch: list[CallOutcome]) -> None:
        for delay in (*RETRY_DELAYS_SECONDS, None):
            try:
                async with transaction(self._sessions) as session:
                    for outcome in batch:
                        await settle_call(session, outcome)
                return
            except Exception:
                if delay is None:
                    logger.exception(
                        "could not settle %d calls; they stay pending until recovered",
                        len(batch),
                    )
                    return
                logger.warning("settling %d calls failed; retrying in %ss", len(batch), delay)
                await asyncio.sleep(delay)
