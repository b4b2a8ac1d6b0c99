"""What an upstream sends during a call reaches the caller through Tollgate, in both protocol
eras: progress notifications (to the request that asked for them, with the result
unchanged), and completions of prompt and resource-template arguments."""

from __future__ import annotations

import mcp_types as types
import pytest
from mcp import MCPError

from tests.gateway.conftest import (
    ERAS,
    Gateway,
    Upstream,
    connect,
    quick_member,
    register_upstream,
    text_of,
)
from tollgate.identity.models import Role

Progress = tuple[float, float | None, str | None]


@pytest.mark.parametrize("mode", ERAS)
async def test_upstream_progress_reaches_the_caller_and_the_result_is_unchanged(
    upstream: Upstream, gateway: Gateway, mode: str
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=upstream.url, price=1)
    user = await quick_member(gateway, credits=10)
    seen: list[Progress] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with connect(gateway, user.key, mode) as client:
        reported = await client.call_tool(
            "echo__steps", {"count": 3}, progress_callback=on_progress
        )
        unasked = await client.call_tool("echo__steps", {"count": 2})

    assert (reported.is_error, text_of(reported)) == (False, "3 steps")
    assert seen == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]
    assert (unasked.is_error, text_of(unasked)) == (False, "2 steps")


@pytest.mark.parametrize("mode", ERAS)
async def test_completions_of_prompt_and_template_arguments_come_from_their_upstream(
    upstream: Upstream, gateway: Gateway, mode: str
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=upstream.url)
    user = await quick_member(gateway)

    async with connect(gateway, user.key, mode) as client:
        [template] = (await client.list_resource_templates()).resource_templates
        for_prompt = await client.complete(
            types.PromptReference(name="echo__greet"), {"name": "who", "value": "al"}
        )
        for_template = await client.complete(
            types.ResourceTemplateReference(uri=template.uri_template),
            {"name": "who", "value": "b"},
        )
        with pytest.raises(MCPError) as unknown:
            await client.complete(
                types.PromptReference(name="nowhere__greet"), {"name": "who", "value": ""}
            )

    assert template.uri_template.startswith("tollgate://echo/")
    assert for_prompt.completion.values == ["alice", "albert"]
    assert for_template.completion.values == ["bob"]
    assert unknown.value.code == types.INVALID_PARAMS
