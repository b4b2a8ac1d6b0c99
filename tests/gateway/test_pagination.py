"""Long lists are served in pages: tools, resources, templates and prompts follow
``nextCursor`` to the end, in both eras, and a cursor that is not Tollgate's is refused."""

from __future__ import annotations

from typing import Any

import mcp_types as types
import pytest
from mcp import Client, MCPError

from tests.gateway.conftest import (
    ERAS,
    Gateway,
    Upstream,
    connect,
    quick_member,
    register_upstream,
)
from tollgate.core.settings import Settings
from tollgate.identity.models import Role

PAGE_SIZE = 2


@pytest.fixture
def gateway_settings(settings: Settings) -> Settings:
    """A gateway serving two items per page."""
    return settings.model_copy(update={"list_page_size": PAGE_SIZE})


async def every_tool(client: Client) -> tuple[list[str], int]:
    """All tool names, following the cursors, and how many pages it took."""
    names: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        result = await client.list_tools(cursor=cursor, cache_mode="bypass")
        pages += 1
        assert len(result.tools) <= PAGE_SIZE
        names += [tool.name for tool in result.tools]
        cursor = result.next_cursor
        if not cursor:
            return names, pages


@pytest.mark.parametrize("mode", ERAS)
async def test_tools_come_in_pages_that_add_up_to_the_whole_list(
    upstream: Upstream, gateway: Gateway, mode: str
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    registered: dict[str, Any] = await register_upstream(
        gateway, admin, name="echo", url=upstream.url
    )
    member = await quick_member(gateway)

    async with connect(gateway, member.key, mode) as client:
        names, pages = await every_tool(client)
        first_prompts = await client.list_prompts()
        with pytest.raises(MCPError) as refused:
            await client.list_tools(cursor="not-a-cursor", cache_mode="bypass")

    offered = sorted(tool["name"] for tool in registered["tools"])
    assert sorted(names) == offered
    assert len(names) == len(set(names))
    assert pages == -(-len(offered) // PAGE_SIZE)
    assert len(first_prompts.prompts) == 1
    assert first_prompts.next_cursor is None
    assert refused.value.code == types.INVALID_PARAMS
