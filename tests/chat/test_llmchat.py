"""The LLM chat (seed 003) against scripted OpenAI-compatible and Anthropic servers: tools
come through Tollgate's own gateway as the user (metered, recorded), answers stream as
server-sent events, and the session routes answer as the seed says."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from tests.chat.helpers import API_KEY, PRICE, configure, connected, events_of, post
from tests.chat.scripted import ScriptedLLM
from tests.gateway.conftest import (
    Gateway,
    Upstream,
    balance,
    http_to,
    quick_member,
    serving,
    wait_settled,
)
from tests.waiting import eventually
from tollgate.analytics.models import CostTracking, UsageEvent
from tollgate.core.settings import Settings

KINDS = ["openai", "anthropic"]


def tool_result_sent(kind: str, request: dict[str, Any]) -> str:
    """The tool result a model request carried back to the model."""
    if kind == "openai":
        [tool] = [m for m in request["messages"] if m["role"] == "tool"]
        return str(tool["content"])
    blocks = [
        b for m in request["messages"] if isinstance(m["content"], list) for b in m["content"]
    ]
    [result] = [b for b in blocks if b["type"] == "tool_result"]
    return str(result["content"])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("streaming", [False, True])
async def test_chat_calls_a_tool_through_tollgate_and_charges_the_user(
    upstream: Upstream,
    gateway: Gateway,
    llm: tuple[ScriptedLLM, str],
    kind: str,
    streaming: bool,
) -> None:
    scripted, llm_url = llm
    await configure(gateway, upstream.url, llm_url, kind)
    user = await quick_member(gateway, credits=10)
    scripted.say(tool="echo__echo", arguments={"text": "hi there"})
    scripted.say("The echo said hi there.")

    session = await connected(gateway, user, user_id=str(user.user_id))
    answer = await post(
        gateway, user, "/llmchat/chat", {"message": "Echo hi there", "streaming": streaming}
    )

    assert session["status"] == "connected"
    assert "echo__echo" in session["tools"]
    assert session["tool_count"] == len(session["tools"])
    assert answer.status_code == 200, answer.text
    if streaming:
        assert answer.headers["content-type"].startswith("text/event-stream")
        events = events_of(answer.text)
        kinds = [name for name, _ in events]
        assert kinds.index("tool_start") < kinds.index("tool_end") < kinds.index("final")
        assert kinds[-1] == "final"
        tokens = "".join(data["content"] for name, data in events if name == "token")
        assert tokens == "The echo said hi there."
        final = events[-1][1]
        assert (final["text"], final["metadata"]["tools"]) == (
            "The echo said hi there.",
            ["echo__echo"],
        )
        [(_, ended)] = [(n, d) for n, d in events if n == "tool_end"]
        assert (ended["result"], ended["credits"]) == ("hi there", PRICE)
    else:
        body = answer.json()
        assert body["response"] == "The echo said hi there."
        assert (body["tool_used"], body["tools"], body["tool_invocations"]) == (
            True,
            ["echo__echo"],
            1,
        )
        assert body["credits_charged"] == PRICE
    assert tool_result_sent(kind, scripted.requests[1]) == "hi there"
    assert scripted.headers[0]["authorization"] == f"Bearer {API_KEY}"
    [record] = await wait_settled(gateway.runtime, user.account_id)
    assert (record.tool_name, record.credits_charged) == ("echo__echo", PRICE)
    assert await balance(gateway.runtime, user.account_id) == 10 - PRICE
    costs = await _costs(gateway, expected=2)
    assert [c.tokens_used for c in costs] == [18, 18]
    assert sum(c.cost_usd for c in costs) == Decimal("0.05")  # 2 x (11 x 1000 + 7 x 2000) / 1e6


async def _costs(gateway: Gateway, expected: int) -> list[CostTracking]:
    rows: list[CostTracking] = []

    async def recorded() -> bool:
        async with gateway.runtime.sessions() as session:
            rows[:] = (await session.execute(select(CostTracking))).scalars().all()
            events = (await session.execute(select(UsageEvent))).scalars().all()
        return (
            len(rows) == expected
            and len([e for e in events if e.event_type == "llm_call"]) == expected
        )

    await eventually(recorded, lambda: f"{expected} model calls recorded, got {len(rows)}")
    return rows


@pytest.mark.parametrize("kind", KINDS)
async def test_a_failing_tool_is_a_tool_error_and_the_turn_goes_on(
    upstream: Upstream, gateway: Gateway, llm: tuple[ScriptedLLM, str], kind: str
) -> None:
    scripted, llm_url = llm
    await configure(gateway, upstream.url, llm_url, kind)
    user = await quick_member(gateway, credits=10)
    scripted.say(tool="echo__fail")
    scripted.say("The tool failed, sorry.")
    await connected(gateway, user)

    answer = await post(gateway, user, "/llmchat/chat", {"message": "Try it", "streaming": True})

    events = events_of(answer.text)
    [(_, failed)] = [(n, d) for n, d in events if n == "tool_error"]
    assert failed["tool"] == "echo__fail"
    assert events[-1][0] == "final"
    assert events[-1][1]["text"] == "The tool failed, sorry."


async def test_session_routes_answer_as_seed_003_says(
    upstream: Upstream, gateway: Gateway, llm: tuple[ScriptedLLM, str]
) -> None:
    scripted, llm_url = llm
    admin = await configure(gateway, upstream.url, llm_url, "openai")
    user, other = await quick_member(gateway), await quick_member(gateway)
    own = str(user.user_id)

    async with http_to(gateway) as http:
        before = await http.get(f"/llmchat/status/{own}", headers=user.jwt_headers)
        no_session = await http.post(
            "/llmchat/chat", json={"message": "hi"}, headers=user.jwt_headers
        )
    server = {"url": "/mcp", "auth_token": "server-secret"}
    await connected(gateway, user, server=server)
    async with http_to(gateway) as http:
        status = await http.get(f"/llmchat/status/{own}", headers=user.jwt_headers)
        config = await http.get(f"/llmchat/config/{own}", headers=user.jwt_headers)
        foreign = await http.get(f"/llmchat/config/{own}", headers=other.jwt_headers)
        models = await http.get("/llmchat/gateway/models", headers=user.jwt_headers)
        providers = await http.get("/api/v1/llm/providers", headers=admin.jwt_headers)
        not_admin = await http.get("/api/v1/llm/providers", headers=user.jwt_headers)
    bad_model = await post(gateway, user, "/llmchat/connect", {"llm": {"model": "nope"}})
    empty = await post(gateway, user, "/llmchat/chat", {"message": "  "})
    mismatch = await post(gateway, other, "/llmchat/disconnect", {"user_id": own})
    gone = await post(gateway, user, "/llmchat/disconnect", {"user_id": own})
    again = await post(gateway, user, "/llmchat/disconnect", {})

    assert before.json() == {"user_id": own, "connected": False}
    assert no_session.status_code == 400
    assert "No active session found" in no_session.json()["detail"]["message"]
    assert status.json() == {"user_id": own, "connected": True}
    assert config.json()["mcp_server"]["auth_token"] == "********"
    assert "server-secret" not in config.text
    assert config.json()["llm"]["config"]["model"] == "m1"
    assert foreign.status_code == 403
    [model] = models.json()["models"]
    assert (model["model_id"], model["provider_type"], models.json()["count"]) == (
        "m1",
        "openai",
        1,
    )
    assert providers.json()[0]["api_key"] == "********"
    assert API_KEY not in providers.text
    assert not_admin.status_code == 403
    assert (bad_model.status_code, bad_model.json()["detail"]["code"]) == (400, "model_not_found")
    assert (empty.status_code, empty.json()["detail"]["message"]) == (
        400,
        "Message cannot be empty",
    )
    assert (mismatch.status_code, mismatch.json()["detail"]["message"]) == (
        403,
        "User ID mismatch.",
    )
    assert gone.json()["status"] == "disconnected"
    assert again.json()["status"] == "no_active_session"
    assert scripted.requests == []


async def test_a_provider_that_is_down_is_503_and_an_error_event_when_streaming(
    upstream: Upstream, gateway: Gateway, llm: tuple[ScriptedLLM, str]
) -> None:
    scripted, llm_url = llm
    await configure(gateway, upstream.url, llm_url, "openai")
    user = await quick_member(gateway)
    await connected(gateway, user)
    scripted.say(status=500)
    scripted.say(status=503)

    plain = await post(gateway, user, "/llmchat/chat", {"message": "hi"})
    streamed = await post(gateway, user, "/llmchat/chat", {"message": "hi", "streaming": True})

    assert plain.status_code == 503
    assert plain.json()["detail"]["code"] == "llm_unavailable"
    [(name, error)] = events_of(streamed.text)
    assert name == "error"
    assert error["recoverable"] is True
    assert "HTTP 503" in error["error"]


async def test_a_provider_that_does_not_answer_in_time_is_504(
    upstream: Upstream, gateway: Gateway, llm: tuple[ScriptedLLM, str]
) -> None:
    scripted, llm_url = llm
    admin = await configure(gateway, upstream.url, llm_url, "anthropic")
    async with http_to(gateway) as http:
        quick = {"timeout_seconds": 0.5}
        changed = await http.patch(
            "/api/v1/llm/providers/scripted", json=quick, headers=admin.jwt_headers
        )
    assert changed.status_code == 200, changed.text
    user = await quick_member(gateway)
    await connected(gateway, user)
    held = threading.Event()
    scripted.say("too late", hold=held)
    try:
        answer = await post(gateway, user, "/llmchat/chat", {"message": "hi"})
    finally:
        held.set()

    assert answer.status_code == 504
    assert (
        answer.json()["detail"]["message"] == "Request timed out. The LLM took too long to respond."
    )


async def test_another_mcp_server_is_refused_unless_settings_allow_it(
    upstream: Upstream, gateway_settings: Settings, llm: tuple[ScriptedLLM, str]
) -> None:
    scripted, llm_url = llm
    allowing = gateway_settings.model_copy(update={"chat_allow_external_servers": True})
    external = {"url": upstream.url}
    async with serving(gateway_settings) as strict:
        await configure(strict, upstream.url, llm_url, "openai")
        user = await quick_member(strict)
        refused = await post(
            strict, user, "/llmchat/connect", {"llm": {"model": "m1"}, "server": external}
        )
    async with serving(allowing) as open_gateway:
        user = await quick_member(open_gateway)
        scripted.say(tool="echo", arguments={"text": "direct"})
        scripted.say("Done.")
        session = await connected(open_gateway, user, server=external)
        answer = await post(open_gateway, user, "/llmchat/chat", {"message": "go"})
        bad = await post(
            open_gateway,
            user,
            "/llmchat/connect",
            {"llm": {"model": "m1"}, "server": {"url": "http://169.254.169.254/mcp"}},
        )

    assert refused.status_code == 400
    assert refused.json()["detail"]["message"] == "Invalid server URL"
    assert "echo" in session["tools"]  # the upstream's own names: not through Tollgate
    assert answer.json()["tools"] == ["echo"]
    assert tool_result_sent("openai", scripted.requests[-1]) == "direct"
    assert bad.status_code == 400
    assert bad.json()["detail"]["message"] == "Invalid server URL"
