"""Periodic background jobs run by the server process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

Job = Callable[[], Awaitable[object]]


class Scheduler:
    """Runs each job at start and then every ``interval`` seconds until stopped."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    def every(self, interval: float, name: str, job: Job) -> None:
        """Start running ``job`` now and every ``interval`` seconds."""
        self._tasks.append(asyncio.create_task(self._loop(interval, name, job), name=name))

    async def _loop(self, interval: float, name: str, job: Job) -> None:
        while True:
            try:
                await job()
            except Exception:
                logger.exception("job %s failed; it will run again in %ss", name, interval)
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        """Cancel every job and wait for them to finish."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
