"""The per-key rate limit: past the limit a call is a tool error that costs nothing and says
when to retry."""

from __future__ import annotations

import time

import pytest

from tests.gateway.conftest import (
    ERAS,
    Gateway,
    Upstream,
    balance,
    connect,
    quick_member,
    register_upstream,
    text_of,
    wait_settled,
)
from tollgate.core.settings import Settings
from tollgate.gateway.hub import RATE_WINDOW_SECONDS
from tollgate.identity.models import Role

LIMIT = 3


@pytest.fixture
def gateway_settings(settings: Settings) -> Settings:
    """A gateway that allows each key three calls a minute."""
    return settings.model_copy(update={"key_rate_limit_per_minute": LIMIT})


def _window() -> int:
    return int(time.time() // RATE_WINDOW_SECONDS)


@pytest.mark.parametrize("mode", ERAS)
async def test_call_past_the_rate_limit_is_a_tool_error_without_a_charge(
    upstream: Upstream, gateway: Gateway, mode: str
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=upstream.url, price=1)
    # The limit counts in fixed windows: a run that straddles two is redone with a new key.
    for _ in range(2):
        user = await quick_member(gateway, credits=10)
        window = _window()
        async with connect(gateway, user.key, mode) as client:
            results = [
                await client.call_tool("echo__echo", {"text": str(i)}) for i in range(LIMIT + 1)
            ]
        if _window() == window:
            break

    assert [r.is_error for r in results] == [False] * LIMIT + [True]
    limited = results[-1]
    assert limited.meta is not None
    assert limited.meta["tollgate"]["code"] == "rate_limited"
    assert limited.meta["tollgate"]["limit_per_minute"] == LIMIT
    retry_after = limited.meta["tollgate"]["retry_after_seconds"]
    assert 1 <= retry_after <= RATE_WINDOW_SECONDS
    assert "Rate limit" in text_of(limited)
    assert f"retry in {retry_after} s" in text_of(limited)
    calls = await wait_settled(gateway.runtime, user.account_id)
    assert [c.success for c in calls] == [True] * LIMIT
    assert await balance(gateway.runtime, user.account_id) == 10 - LIMIT
