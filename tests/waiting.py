"""The one bounded wait of the suite: poll a condition until it holds, or fail saying what.

DESIGN: no sleeps to wait for things; wait on the event, bounded. Where no event can be
awaited (another process's state, a server coming up), poll it here: every wait has a
deadline and a failure names what did not happen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_WAIT_SECONDS = 15.0
"""Far longer than anything a passing test waits for on a loaded machine."""

POLL_SECONDS = 0.05
"""Short against every deadline, long enough not to take a core from the server under test."""

Description = str | Callable[[], str]
"""What is awaited, or a function saying so from the state at the deadline."""


def _failure(what: Description, timeout: float) -> AssertionError:
    text = what() if callable(what) else what
    return AssertionError(f"not within {timeout} s: {text}")


async def eventually(
    check: Callable[[], Awaitable[T | None]],
    what: Description = "the condition holds",
    timeout: float = DEFAULT_WAIT_SECONDS,
) -> T:
    """Await ``check()`` until it returns something truthy and return that; fail after
    ``timeout`` seconds with ``what``. An exception from ``check`` ends the wait at once."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise _failure(what, timeout)
        await asyncio.sleep(POLL_SECONDS)


def eventually_sync(
    check: Callable[[], T | None],
    what: Description = "the condition holds",
    timeout: float = DEFAULT_WAIT_SECONDS,
) -> T:
    """:func:`eventually` for code that cannot await (fixtures starting a server)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise _failure(what, timeout)
        time.sleep(POLL_SECONDS)
