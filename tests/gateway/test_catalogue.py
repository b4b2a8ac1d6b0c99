"""The federated catalogue: resources and prompts under mapped names, refresh on demand,
upstream list changes reaching connected clients in both eras, and an upstream that is
disabled or down leaving tools/list until it is back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import anyio
import httpx
import mcp_types as types
import pytest
from mcp import MCPError
from mcp.client.subscriptions import PromptsListChanged, ToolsListChanged
from mcp.server import Server, ServerRequestContext

from tests.gateway.conftest import (
    ERAS,
    Gateway,
    Member,
    StoppableUpstream,
    Upstream,
    WatchedGateway,
    connect,
    http_to,
    quick_member,
    register_upstream,
    text_of,
    tool_names,
)
from tests.gateway.upstream import ALLOW_LOCAL, serve_in_thread
from tests.waiting import eventually
from tollgate.identity.models import Role

NOTIFICATION_SECONDS = 10.0
"""A list change travels upstream -> gateway -> client well within this."""

HELLO_URI = "tollgate://echo/res%3A%2F%2Fhello"


async def admin_request(
    gateway: Gateway, admin: Member, method: str, path: str, **kwargs: Any
) -> httpx.Response:
    async with http_to(gateway) as http:
        return await http.request(method, path, headers=admin.jwt_headers, **kwargs)


@pytest.mark.parametrize("mode", ERAS)
async def test_resources_and_prompts_are_federated_under_mapped_names(
    upstream: Upstream, gateway: Gateway, mode: str
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    added = await register_upstream(gateway, admin, name="echo", url=upstream.url)
    member = await quick_member(gateway)

    async with connect(gateway, member.key, mode) as client:
        resources = (await client.list_resources()).resources
        read = await client.read_resource(HELLO_URI)
        prompts = (await client.list_prompts()).prompts
        prompt = await client.get_prompt("echo__greet", {"who": "Ada"})
        with pytest.raises(MCPError) as unknown_resource:
            await client.read_resource("res://hello")
        with pytest.raises(MCPError) as unknown_prompt:
            await client.get_prompt("other__greet", {"who": "Ada"})

    assert (added["resources"], added["prompts"]) == (1, 1)
    assert [(str(r.uri), r.name) for r in resources] == [(HELLO_URI, "echo__hello")]
    [content] = read.contents
    assert isinstance(content, types.TextResourceContents)
    assert (str(content.uri), content.text) == (HELLO_URI, "hello from echo")
    assert [p.name for p in prompts] == ["echo__greet"]
    assert prompts[0].arguments is not None
    assert [a.name for a in prompts[0].arguments] == ["who"]
    [message] = prompt.messages
    assert isinstance(message.content, types.TextContent)
    assert "Please greet Ada warmly." in message.content.text
    assert unknown_resource.value.code == unknown_prompt.value.code == types.INVALID_PARAMS


async def test_refresh_reads_what_the_upstream_offers_now(
    stoppable_upstream: StoppableUpstream, gateway: Gateway
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=stoppable_upstream.url)
    member = await quick_member(gateway)

    def quiet() -> str:
        return "added without telling anyone"

    stoppable_upstream.mcp.add_tool(quiet, name="quiet", description="no notification")
    async with connect(gateway, member.key) as client:
        before = await tool_names(client)
        refreshed = await admin_request(gateway, admin, "POST", "/api/v1/upstreams/echo/refresh")
        after = await tool_names(client)
        result = await client.call_tool("echo__quiet", {})

    assert "echo__quiet" not in before
    assert refreshed.status_code == 200, refreshed.text
    assert "echo__quiet" in {t["name"] for t in refreshed.json()["tools"]}
    assert refreshed.json()["state"] == "up"
    assert "echo__quiet" in after
    assert text_of(result) == "added without telling anyone"


async def test_upstream_list_change_reaches_a_legacy_client_as_a_notification(
    upstream: Upstream, watched_gateway: WatchedGateway
) -> None:
    gateway = watched_gateway
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=upstream.url)
    member = await quick_member(gateway)
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async with connect(gateway, member.key, "legacy", message_handler=on_message) as client:
        assert "echo__fresh" not in await tool_names(client)
        await gateway.wait_event_streams()
        assert text_of(await client.call_tool("echo__mutate", {"tool_name": "fresh"})) == (
            "added fresh"
        )
        with anyio.fail_after(NOTIFICATION_SECONDS):
            await changed.wait()
        offered = await tool_names(client)
        fresh = await client.call_tool("echo__fresh", {})

    assert "echo__fresh" in offered
    assert text_of(fresh) == "I am fresh"


async def test_upstream_list_change_reaches_a_2026_client_on_its_listen_stream(
    upstream: Upstream, gateway: Gateway
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=upstream.url)
    member = await quick_member(gateway)

    async with connect(gateway, member.key, "2026-07-28") as client:
        async with client.listen(tools_list_changed=True) as events:
            await client.call_tool("echo__mutate", {"tool_name": "fresh"})
            with anyio.fail_after(NOTIFICATION_SECONDS):
                event = await events.__anext__()
        offered = await tool_names(client)

    assert isinstance(event, ToolsListChanged)
    assert "echo__fresh" in offered


@pytest.mark.parametrize("mode", ERAS)
async def test_disabled_upstream_leaves_tools_list_until_enabled_again(
    upstream: Upstream, gateway: Gateway, mode: str
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=upstream.url)
    member = await quick_member(gateway, credits=5)

    async with connect(gateway, member.key, mode) as client:
        disabled = await admin_request(
            gateway, admin, "PATCH", "/api/v1/upstreams/echo", json={"enabled": False}
        )
        while_disabled = await tool_names(client)
        resources_while_disabled = (await client.list_resources()).resources
        with pytest.raises(MCPError) as refused:
            await client.call_tool("echo__echo", {"text": "x"})
        enabled = await admin_request(
            gateway, admin, "PATCH", "/api/v1/upstreams/echo", json={"enabled": True}
        )
        back = await tool_names(client)
        answer = await client.call_tool("echo__echo", {"text": "back"})

    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["enabled"] is False
    assert while_disabled == set()
    assert resources_while_disabled == []
    assert refused.value.code == types.INVALID_PARAMS
    assert enabled.status_code == 200, enabled.text
    assert {"echo__echo", "echo__add"} <= back
    assert text_of(answer) == "back"


async def test_disabling_an_upstream_tells_legacy_clients_the_tools_changed(
    upstream: Upstream, watched_gateway: WatchedGateway
) -> None:
    gateway = watched_gateway
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=upstream.url)
    member = await quick_member(gateway)
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async with connect(gateway, member.key, "legacy", message_handler=on_message) as client:
        assert "echo__echo" in await tool_names(client)
        await gateway.wait_event_streams()
        disabled = await admin_request(
            gateway, admin, "PATCH", "/api/v1/upstreams/echo", json={"enabled": False}
        )
        assert disabled.status_code == 200, disabled.text
        with anyio.fail_after(NOTIFICATION_SECONDS):
            await changed.wait()


@pytest.mark.parametrize("mode", ERAS)
async def test_down_upstream_leaves_tools_list_and_shows_down_with_its_error(
    lingering_upstream: StoppableUpstream, gateway: Gateway, mode: str
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=lingering_upstream.url)
    member = await quick_member(gateway)

    async with connect(gateway, member.key, mode) as client:
        assert "echo__echo" in await tool_names(client)
        await lingering_upstream.begin_shutdown()
        refresh = await admin_request(gateway, admin, "POST", "/api/v1/upstreams/echo/refresh")

        async def tools_gone() -> bool:
            return not {n for n in await tool_names(client) if n.startswith("echo__")}

        await eventually(tools_gone, "the down upstream's tools leave tools/list")
        with pytest.raises(MCPError) as refused:
            await client.call_tool("echo__echo", {"text": "x"})

    described = await admin_request(gateway, admin, "GET", "/api/v1/upstreams/echo")
    assert refresh.status_code == 503, refresh.text
    assert refresh.json()["detail"]["code"] == "upstream_unavailable"
    assert refused.value.code == types.INVALID_PARAMS
    assert described.status_code == 200
    assert described.json()["state"] == "down"
    assert described.json()["last_error"]
    assert described.json()["last_seen_at"] is not None


PAGES = 3
"""The paginating upstream below serves each of its lists in this many pages."""


def paginating_server() -> Server[Any]:
    """An upstream whose resources and prompts come in PAGES pages each, and which declares
    resources without answering ``resources/templates/list`` (METHOD_NOT_FOUND)."""

    def page_of(params: types.PaginatedRequestParams | None) -> tuple[int, str | None]:
        number = int(params.cursor) if params is not None and params.cursor else 0
        return number, str(number + 1) if number + 1 < PAGES else None

    async def resources(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        number, after = page_of(params)
        found = [types.Resource(uri=f"res://page/{number}", name=f"page{number}")]
        return types.ListResourcesResult(resources=found, next_cursor=after)

    async def prompts(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        number, after = page_of(params)
        found = [types.Prompt(name=f"prompt{number}")]
        return types.ListPromptsResult(prompts=found, next_cursor=after)

    async def tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[])

    return Server(
        "pages", on_list_tools=tools, on_list_resources=resources, on_list_prompts=prompts
    )


@pytest.fixture
def paginating_upstream() -> Iterator[str]:
    """:func:`paginating_server` over Streamable HTTP; yields its URL."""
    app = paginating_server().streamable_http_app(transport_security=ALLOW_LOCAL)
    url, stop = serve_in_thread(app)
    try:
        yield url
    finally:
        stop()


@pytest.mark.parametrize("mode", ERAS)
async def test_every_page_of_an_upstreams_lists_is_read_and_a_missing_method_is_no_failure(
    paginating_upstream: str, gateway: Gateway, mode: str
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    registered = await register_upstream(gateway, admin, name="pages", url=paginating_upstream)
    member = await quick_member(gateway)

    async with connect(gateway, member.key, mode) as client:
        resources = (await client.list_resources()).resources
        prompts = (await client.list_prompts()).prompts
        templates = (await client.list_resource_templates()).resource_templates

    assert registered["state"] == "up"
    assert len(resources) == len(prompts) == PAGES
    assert {unquote(str(r.uri)) for r in resources} == {
        f"tollgate://pages/res://page/{n}" for n in range(PAGES)
    }
    assert templates == []


async def test_a_prompt_change_is_announced_as_a_prompt_change(
    upstream: Upstream, watched_gateway: WatchedGateway
) -> None:
    gateway = watched_gateway
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=upstream.url)
    member = await quick_member(gateway)
    seen: list[str] = []
    prompts_changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.PromptListChangedNotification):
            seen.append("prompts")
            prompts_changed.set()
        elif isinstance(message, types.ToolListChangedNotification):
            seen.append("tools")

    async with connect(gateway, member.key, "legacy", message_handler=on_message) as client:
        await gateway.wait_event_streams()
        await client.call_tool("echo__add_prompt", {"prompt_name": "fresh"})
        with anyio.fail_after(NOTIFICATION_SECONDS):
            await prompts_changed.wait()
        await anyio.sleep(0.3)  # a wrong "tools" notice would be sent along with it
        offered = [p.name for p in (await client.list_prompts()).prompts]

    assert seen == ["prompts"]
    assert any(name.endswith("fresh") for name in offered)


async def test_a_prompt_change_reaches_a_2026_client_as_a_prompt_change(
    upstream: Upstream, gateway: Gateway
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=upstream.url)
    member = await quick_member(gateway)

    async with (
        connect(gateway, member.key, "2026-07-28") as client,
        client.listen(tools_list_changed=True, prompts_list_changed=True) as events,
    ):
        await client.call_tool("echo__add_prompt", {"prompt_name": "fresh"})
        with anyio.fail_after(NOTIFICATION_SECONDS):
            event = await events.__anext__()

    assert isinstance(event, PromptsListChanged)
