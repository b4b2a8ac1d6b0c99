"""Per-user credential injection: an upstream registered with broker auth is called with the
calling user's own credential (never a Tollgate key), over a session pooled per credential;
a user without one gets a tool error naming the service and pays nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.gateway.conftest import (
    ERAS,
    Gateway,
    Member,
    StoppableUpstream,
    balance,
    calls_of,
    connect,
    http_to,
    quick_member,
    register_upstream,
    serving,
    text_of,
    wait_settled,
)
from tollgate.core.settings import Settings
from tollgate.identity.models import Role

CALLS_EACH = 3


async def add_jira(gateway: Gateway, member: Member, api_token: str) -> dict[str, Any]:
    """A personal Jira integration for ``member``."""
    async with http_to(gateway) as http:
        response = await http.post(
            "/api/v1/integrations",
            json={
                "service": "jira",
                "credentials": {
                    "url": "https://example.atlassian.net",
                    "email": member.email,
                    "api_token": api_token,
                },
            },
            headers=member.jwt_headers,
        )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def add_jira_upstream(gateway: Gateway, url: str) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    added = await register_upstream(
        gateway,
        admin,
        name="jira",
        url=url,
        price=1,
        auth="broker",
        broker_service="jira",
        broker_header="Authorization: Bearer {api_token}",
    )
    assert "jira__echo" in {t["name"] for t in added["tools"]}


@pytest.mark.parametrize("mode", ERAS)
async def test_each_user_reaches_the_upstream_with_their_own_token_over_one_session(
    stoppable_upstream: StoppableUpstream, gateway: Gateway, mode: str
) -> None:
    await add_jira_upstream(gateway, stoppable_upstream.url)
    ada, bob = await quick_member(gateway, credits=10), await quick_member(gateway, credits=10)
    await add_jira(gateway, ada, "ada-token-1")
    await add_jira(gateway, bob, "bob-token-2")

    answers: dict[str, list[str]] = {ada.email: [], bob.email: []}
    for member in (ada, bob, ada):  # Ada comes back in a new client session
        async with connect(gateway, member.key, mode) as client:
            for i in range(CALLS_EACH):
                result = await client.call_tool("jira__echo", {"text": f"{i}"})
                assert result.is_error is False, text_of(result)
                answers[member.email].append(text_of(result))

    seen = stoppable_upstream.recorder.seen
    tool_calls = [r.authorization for r in seen if r.method == "tools/call"]
    assert tool_calls.count("Bearer ada-token-1") == 2 * CALLS_EACH
    assert tool_calls.count("Bearer bob-token-2") == CALLS_EACH
    assert len(tool_calls) == 3 * CALLS_EACH
    assert set(stoppable_upstream.headers.seen) == {"", "Bearer ada-token-1", "Bearer bob-token-2"}
    assert not [r for r in seen if "mcp_" in r.authorization]
    for member in (ada, bob):
        assert member.key not in str(seen)
    # One upstream session per credential, however many calls and client sessions.
    assert stoppable_upstream.recorder.handshakes("Bearer ada-token-1") == 1
    assert stoppable_upstream.recorder.handshakes("Bearer bob-token-2") == 1
    assert answers[ada.email] == ["0", "1", "2"] * 2
    assert len(await wait_settled(gateway.runtime, ada.account_id)) == 2 * CALLS_EACH
    assert await balance(gateway.runtime, ada.account_id) == 10 - 2 * CALLS_EACH
    assert await balance(gateway.runtime, bob.account_id) == 10 - CALLS_EACH


@pytest.mark.parametrize("mode", ERAS)
async def test_user_without_the_credential_gets_a_tool_error_naming_the_service(
    stoppable_upstream: StoppableUpstream, gateway: Gateway, mode: str
) -> None:
    await add_jira_upstream(gateway, stoppable_upstream.url)
    carol = await quick_member(gateway, credits=10)

    async with connect(gateway, carol.key, mode) as client:
        result = await client.call_tool("jira__echo", {"text": "hi"})

    assert result.is_error is True
    assert "jira" in text_of(result)
    assert result.meta is not None
    assert result.meta["tollgate"]["code"] == "missing_credential"
    assert result.meta["tollgate"]["service"] == "jira"
    assert not [r for r in stoppable_upstream.recorder.seen if r.method == "tools/call"]
    assert await calls_of(gateway.runtime, carol.account_id) == []
    assert await balance(gateway.runtime, carol.account_id) == 10


@pytest.mark.parametrize("mode", ERAS)
async def test_changed_credential_is_used_from_the_next_call(
    stoppable_upstream: StoppableUpstream, gateway: Gateway, mode: str
) -> None:
    await add_jira_upstream(gateway, stoppable_upstream.url)
    ada = await quick_member(gateway, credits=10)
    integration = await add_jira(gateway, ada, "old-token")

    async with connect(gateway, ada.key, mode) as client:
        before = await client.call_tool("jira__echo", {"text": "before"})
        async with http_to(gateway) as http:
            changed = await http.patch(
                f"/api/v1/integrations/{integration['id']}",
                json={
                    "credentials": {
                        "url": "https://example.atlassian.net",
                        "email": ada.email,
                        "api_token": "new-token",
                    }
                },
                headers=ada.jwt_headers,
            )
        assert changed.status_code == 200, changed.text
        after = await client.call_tool("jira__echo", {"text": "after"})
        async with http_to(gateway) as http:
            disabled = await http.patch(
                f"/api/v1/integrations/{integration['id']}",
                json={"status": "DISABLED"},
                headers=ada.jwt_headers,
            )
        assert disabled.status_code == 200, disabled.text
        refused = await client.call_tool("jira__echo", {"text": "refused"})

    assert (before.is_error, after.is_error) == (False, False)
    assert refused.is_error is True
    assert refused.meta is not None
    assert refused.meta["tollgate"]["service"] == "jira"
    calls = [r.authorization for r in stoppable_upstream.recorder.seen if r.method == "tools/call"]
    assert calls == ["Bearer old-token", "Bearer new-token"]
    assert len(await wait_settled(gateway.runtime, ada.account_id)) == 2


@pytest.mark.parametrize("hide", [False, True])
async def test_tools_needing_a_credential_the_caller_lacks_are_marked_or_hidden(
    stoppable_upstream: StoppableUpstream, gateway_settings: Settings, hide: bool
) -> None:
    settings = gateway_settings.model_copy(update={"hide_tools_without_credential": hide})
    async with serving(settings) as gateway:
        await add_jira_upstream(gateway, stoppable_upstream.url)
        ada, carol = await quick_member(gateway), await quick_member(gateway)
        await add_jira(gateway, ada, "ada-token-1")
        listed = {}
        for member in (ada, carol):
            async with connect(gateway, member.key) as client:
                listed[member.email] = {t.name: t for t in (await client.list_tools()).tools}

    ada_echo = listed[ada.email]["jira__echo"]
    assert ada_echo.meta is None or "tollgate/credential" not in ada_echo.meta
    if hide:
        assert "jira__echo" not in listed[carol.email]
        return
    carol_echo = listed[carol.email]["jira__echo"]
    assert carol_echo.meta is not None
    assert carol_echo.meta["tollgate/credential"] == {"service": "jira", "connected": False}
    assert carol_echo.description is not None
    assert "Needs your jira credential" in carol_echo.description
