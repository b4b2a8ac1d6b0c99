"""A queue that a background task writes in batches: for work kept off the request path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class BatchWriter(Generic[T]):
    """Collects items (never waiting) and hands them to ``write`` in batches.

    A batch closes when it holds ``size`` items or ``window`` seconds after its first item;
    with a window of 0 it takes what queued while the previous batch was written (a group
    commit: one write at low load, many items per write at high load). Stopping writes what
    is queued.
    """

    def __init__(
        self, name: str, write: Callable[[list[T]], Awaitable[None]], *, size: int, window: float
    ) -> None:
        self._name = name
        self._write = write
        self._size = size
        self._window = window
        self._queue: asyncio.Queue[T] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the background writer."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    def submit(self, item: T) -> None:
        """Queue an item; never waits."""
        self._queue.put_nowait(item)

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

    async def _next_batch(self) -> list[T]:
        loop = asyncio.get_running_loop()
        batch = [await self._queue.get()]
        while len(batch) < self._size:  # what queued while the last batch was written
            try:
                batch.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        deadline = loop.time() + self._window
        while len(batch) < self._size and (timeout := deadline - loop.time()) > 0:
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), timeout))
            except TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            try:
                await self._write(batch)
            except Exception:
                logger.exception("%s could not write %d items", self._name, len(batch))
            finally:
                for _ in batch:
                    self._queue.task_done()
