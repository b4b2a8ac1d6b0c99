"""Settles tool calls in batches, off the request path.

The gateway hands each finished call to :class:`Settler` and answers its client at once; a
background task writes outcomes in batches (one transaction per batch). Stopping flushes
what is queued. Anything a crash leaves pending is settled at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tollgate.accounts.calls import CallOutcome, settle_call
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
        self._queue: asyncio.Queue[CallOutcome] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the background writer."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="settler")

    def submit(self, outcome: CallOutcome) -> None:
        """Queue an outcome; never waits."""
        self._queue.put_nowait(outcome)

    async def flush(self) -> None:
        """Wait until everything queued so far is written."""
        await self._queue.join()

    async def stop(self) -> None:
        """Write what is queued, then stop the writer."""
        if self._task is None:
            return
        await self.flush()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            deadline = asyncio.get_running_loop().time() + BATCH_WINDOW_SECONDS
            while len(batch) < BATCH_SIZE:
                timeout = deadline - asyncio.get_running_loop().time()
                if timeout <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), timeout))
                except TimeoutError:
                    break
            try:
                await self._write(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

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
                        "could not settle %d calls; they stay pending until the next start",
                        len(batch),
                    )
                    return
                logger.warning("settling %d calls failed; retrying in %ss", len(batch), delay)
                await asyncio.sleep(delay)
