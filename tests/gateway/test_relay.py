"""What an upstream sends during a call reaches the caller through Tollgate, in both protocol
eras: progress notifications (to the request that asked for them, with the result
unchanged), and completions of prompt and resource-template arguments."""

from __future__ import annotations

from typing import Any

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
    wait_settled,
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


def said(text: str) -> types.CreateMessageResult:
    """A model's answer, as a client's sampling callback gives it."""
    content = types.TextContent(type="text", text=text)
    return types.CreateMessageResult(role="assistant", content=content, model="scripted")


@pytest.mark.parametrize("mode", ERAS)
async def test_upstream_sampling_is_answered_by_the_calling_client(
    upstream: Upstream, gateway: Gateway, mode: str
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=upstream.url)
    user = await quick_member(gateway, credits=10)
    asked: list[str] = []

    async def sampling(_: Any, params: types.CreateMessageRequestParams) -> Any:
        block = params.messages[0].content
        asked.append(block.text if isinstance(block, types.TextContent) else "?")
        return said("tides are tidal")

    async with connect(gateway, user.key, mode, sampling_callback=sampling) as client:
        result = await client.call_tool("echo__sample", {"topic": "the sea"})

    assert (result.is_error, text_of(result)) == (False, "model said: tides are tidal")
    assert asked == ["Say something about the sea"]
    [record] = await wait_settled(gateway.runtime, user.account_id)
    assert (record.tool_name, record.credits_charged) == ("echo__sample", 1)


@pytest.mark.parametrize(("mode", "action"), [(m, a) for m in ERAS for a in ("accept", "decline")])
async def test_upstream_elicitation_is_answered_by_the_calling_user(
    upstream: Upstream, gateway: Gateway, mode: str, action: str
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=upstream.url)
    user = await quick_member(gateway, credits=10)
    questions: list[str] = []

    async def elicitation(_: Any, params: types.ElicitRequestParams) -> Any:
        questions.append(params.message)
        content = {"answer": "Ada"} if action == "accept" else None
        return types.ElicitResult(action=action, content=content)

    async with connect(gateway, user.key, mode, elicitation_callback=elicitation) as client:
        result = await client.call_tool("echo__ask", {"question": "Your name?"})

    expected = "accept: Ada" if action == "accept" else "decline"
    assert (result.is_error, text_of(result)) == (False, expected)
    assert questions == ["Your name?"]


@pytest.mark.parametrize(
    ("mode", "tool", "capability"),
    [(m, *asked) for m in ERAS for asked in (("sample", "sampling"), ("roots", "roots"))],
)
async def test_a_request_for_what_the_caller_did_not_declare_is_refused_cleanly(
    upstream: Upstream, gateway: Gateway, mode: str, tool: str, capability: str
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=upstream.url)
    user = await quick_member(gateway, credits=10)

    async with connect(gateway, user.key, mode) as client:
        # A round trip first: Tollgate has seen the handshake end (`initialized`, which the
        # client does not wait for) before the call, so the call takes the forward path.
        await client.list_tools()
        with pytest.raises(MCPError) as refused:
            await client.call_tool(f"echo__{tool}", {"topic": "x"} if tool == "sample" else {})

    # The upstream sees the caller's own capabilities, and answers as it would directly.
    assert refused.value.code == types.MISSING_REQUIRED_CLIENT_CAPABILITY
    assert capability in refused.value.message
    [record] = await wait_settled(gateway.runtime, user.account_id)
    assert (record.credits_charged, record.error_code) == (0, "upstream_error")


async def test_a_forged_or_foreign_request_state_is_refused(
    upstream: Upstream, gateway: Gateway
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=upstream.url)
    user, other = await quick_member(gateway, credits=10), await quick_member(gateway, credits=10)

    async def never(_: Any, params: Any) -> Any:
        raise AssertionError("the test answers the questions itself")

    # Declared, so the upstream asks instead of refusing a client that cannot answer.
    askable = {"elicitation_callback": never, "sampling_callback": never}
    async with connect(gateway, user.key, "2026-07-28", **askable) as client:
        asked = await client.session.call_tool(
            "echo__ask", {"question": "Name?"}, allow_input_required=True
        )
        assert isinstance(asked, types.InputRequiredResult)
        assert asked.request_state
        answers: types.InputResponses = {
            key: types.ElicitResult(action="accept", content={"answer": "Eve"})
            for key in asked.input_requests or {}
        }
        with pytest.raises(MCPError) as forged:
            await client.session.call_tool(
                "echo__ask", {"question": "Name?"}, input_responses=answers, request_state="x.y.z"
            )
        with pytest.raises(MCPError) as other_tool:
            await client.session.call_tool(
                "echo__sample", {"topic": "x"}, input_responses=answers,
                request_state=asked.request_state,
            )  # fmt: skip
    async with connect(gateway, other.key, "2026-07-28", **askable) as client:
        with pytest.raises(MCPError) as other_account:
            await client.session.call_tool(
                "echo__ask", {"question": "Name?"}, input_responses=answers,
                request_state=asked.request_state,
            )  # fmt: skip

    for refused in (forged, other_tool, other_account):
        assert refused.value.code == types.INVALID_PARAMS
    assert await wait_settled(gateway.runtime, user.account_id) == []


@pytest.mark.parametrize("mode", ERAS)
async def test_upstream_logs_during_a_call_reach_the_caller_at_its_level(
    upstream: Upstream, gateway: Gateway, mode: str
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=upstream.url)
    user = await quick_member(gateway, credits=10)
    lines: list[tuple[str, Any]] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        lines.append((params.level, params.data))

    options: dict[str, Any] = {"logging_callback": on_log}
    if mode != "legacy":
        options["log_level"] = "warning"  # 2026-07-28: asked for on each request
    async with connect(gateway, user.key, mode, **options) as client:
        if mode == "legacy":
            level = types.SetLevelRequest(params=types.SetLevelRequestParams(level="warning"))
            await client.session.send_request(level, types.EmptyResult)
        result = await client.call_tool("echo__chatty", {})

    assert text_of(result) == "logged"
    assert lines == [("warning", "warning line"), ("error", "error line")]


async def test_resource_subscriptions_are_accepted_for_served_resources_only(
    upstream: Upstream, gateway: Gateway
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=upstream.url)
    user = await quick_member(gateway)

    def subscribe(uri: str) -> types.SubscribeRequest:
        return types.SubscribeRequest(params=types.SubscribeRequestParams(uri=uri))

    async with connect(gateway, user.key) as client:
        [resource] = (await client.list_resources()).resources
        capabilities = client.server_capabilities.resources
        await client.session.send_request(subscribe(str(resource.uri)), types.EmptyResult)
        stop = types.UnsubscribeRequestParams(uri=str(resource.uri))
        await client.session.send_request(types.UnsubscribeRequest(params=stop), types.EmptyResult)
        with pytest.raises(MCPError) as unknown:
            await client.session.send_request(subscribe("tollgate://nowhere/x"), types.EmptyResult)

    assert capabilities is not None
    assert capabilities.subscribe
    assert unknown.value.code == types.INVALID_PARAMS


ROOTS = [types.Root(uri="file:///work/project", name="project")]


@pytest.mark.parametrize("mode", ERAS)
async def test_upstream_roots_request_is_answered_by_the_calling_client(
    upstream: Upstream, gateway: Gateway, mode: str
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=upstream.url)
    user = await quick_member(gateway, credits=10)
    asked: list[str] = []

    async def roots(_: Any) -> types.ListRootsResult:
        asked.append("roots")
        return types.ListRootsResult(roots=ROOTS)

    async with connect(gateway, user.key, mode, list_roots_callback=roots) as client:
        result = await client.call_tool("echo__roots", {})

    assert (result.is_error, text_of(result)) == (False, "file:///work/project")
    assert asked == ["roots"]
    [record] = await wait_settled(gateway.runtime, user.account_id)
    assert (record.tool_name, record.credits_charged) == ("echo__roots", 1)


async def test_tollgate_refuses_an_upstream_roots_request_the_calling_client_cannot_answer(
    upstream: Upstream, gateway: Gateway
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=upstream.url)
    user = await quick_member(gateway, credits=10)

    async def never(_: Any, params: Any) -> Any:
        raise AssertionError("the upstream asks for roots only")

    # Declaring sampling sends the call down the SDK's path: Tollgate relays what the
    # upstream asks, and refuses what the caller cannot answer.
    async with connect(gateway, user.key, "legacy", sampling_callback=never) as client:
        result = await client.call_tool("echo__roots", {})

    assert result.is_error
    assert "The calling client does not support roots" in text_of(result)
    [record] = await wait_settled(gateway.runtime, user.account_id)
    assert (record.credits_charged, record.error_code) == (0, "upstream_error")
