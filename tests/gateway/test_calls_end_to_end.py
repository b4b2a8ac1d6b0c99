"""The official client, in both eras, lists and calls namespaced tools through /mcp, and the
credits move exactly as the rules say."""

from __future__ import annotations

import pytest

from tests.gateway.conftest import (
    ERAS,
    Gateway,
    Upstream,
    add_upstream,
    balance,
    mcp_client,
    new_member,
    text_of,
    wait_settled,
)
from tollgate.identity.models import Role


@pytest.mark.parametrize("mode", ERAS)
async def test_client_lists_namespaced_tools_and_pays_exactly_the_price(
    gateway: Gateway, upstream: Upstream, mode: str
) -> None:
    admin = await new_member(gateway, role=Role.ADMIN)
    added = await add_upstream(gateway, admin, name="echo", url=upstream.url, price=2)
    assert {t["name"] for t in added["tools"]} >= {"echo__echo", "echo__add", "echo__fail"}
    user = await new_member(gateway)
    before = await balance(gateway.runtime, user.account_id)

    async with mcp_client(gateway, user.key, mode) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        result = await client.call_tool("echo__add", {"a": 2, "b": 40})

    assert {"echo__echo", "echo__add", "echo__slow", "echo__fail"} <= names
    assert result.is_error is False
    assert text_of(result) == "42"
    calls = await wait_settled(gateway.runtime, user.account_id)
    assert await balance(gateway.runtime, user.account_id) == before - 2
    assert [(c.tool_name, c.success, c.credits_charged) for c in calls] == [("echo__add", True, 2)]
