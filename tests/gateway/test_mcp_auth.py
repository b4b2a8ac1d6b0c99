"""Who may use /mcp: only an active account key, refused with an OAuth-style 401 otherwise;
and what goes upstream: never the caller's key, and Tollgate's own server info comes back."""

from __future__ import annotations

import time
from typing import Any

import anyio
import httpx
import pytest
from mcp_types import SERVER_INFO_META_KEY
from sqlalchemy import update

from tests.conftest import require_redis
from tests.gateway.conftest import (
    ERAS,
    Gateway,
    StoppableUpstream,
    Upstream,
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
from tollgate import __version__
from tollgate.accounts import service as accounts
from tollgate.accounts.deps import key_store
from tollgate.accounts.models import McpAccount
from tollgate.core.crypto import hash_token, new_token
from tollgate.core.database import transaction
from tollgate.core.settings import Settings
from tollgate.identity.models import AccessToken, Role

METADATA_PATH = "/.well-known/oauth-protected-resource/mcp"
MODERN = "2026-07-28"


def first_request(mode: str) -> tuple[dict[str, str], dict[str, Any]]:
    """Headers and body of the first request a client of ``mode`` sends to /mcp."""
    headers = {"Accept": "application/json, text/event-stream"}
    if mode == MODERN:
        headers |= {"MCP-Protocol-Version": MODERN, "Mcp-Method": "server/discover"}
        meta = {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {},
        }
        return headers, {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "server/discover",
            "params": {"_meta": meta},
        }
    return headers, {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"},
        },
    }


async def post_first_request(
    gateway: Gateway, mode: str, authorization: str | None
) -> httpx.Response:
    headers, body = first_request(mode)
    if authorization is not None:
        headers["Authorization"] = authorization
    async with http_to(gateway) as http:
        return await http.post("/mcp", json=body, headers=headers)


def assert_bearer_challenge(response: httpx.Response, gateway: Gateway, error: str) -> None:
    assert response.status_code == 401, response.text
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'error="{error}"' in challenge
    assert f'resource_metadata="{gateway.url}{METADATA_PATH}"' in challenge
    assert response.json()["error"] == error


@pytest.mark.parametrize("mode", ERAS)
async def test_mcp_without_an_active_key_is_refused_with_a_bearer_challenge(
    gateway: Gateway, mode: str
) -> None:
    member = await quick_member(gateway)

    missing = await post_first_request(gateway, mode, None)
    refused = {
        label: await post_first_request(gateway, mode, authorization)
        for label, authorization in {
            "unknown key": "Bearer mcp_" + "x" * 32,
            "key with a typo": f"Bearer {member.key[:-1]}{'a' if member.key[-1] != 'a' else 'b'}",
            "user's JWT": f"Bearer {member.jwt}",
            "not a bearer": f"Basic {member.key}",
        }.items()
    }
    admitted = await post_first_request(gateway, mode, f"Bearer {member.key}")

    assert_bearer_challenge(missing, gateway, "invalid_request")
    for label, response in refused.items():
        error = "invalid_request" if label == "not a bearer" else "invalid_token"
        assert response.status_code == 401, label
        assert_bearer_challenge(response, gateway, error)
    assert admitted.status_code == 200, admitted.text


async def test_every_method_on_mcp_needs_the_key(gateway: Gateway) -> None:
    async with http_to(gateway) as http:
        responses = [
            await http.get("/mcp", headers={"Accept": "text/event-stream"}),
            await http.delete("/mcp", headers={"Mcp-Session-Id": "abc"}),
            await http.post("/mcp/", json={}),
        ]
    for response in responses:
        assert_bearer_challenge(response, gateway, "invalid_request")


async def test_protected_resource_metadata_names_the_mcp_resource(gateway: Gateway) -> None:
    challenge = (await post_first_request(gateway, "legacy", None)).headers["WWW-Authenticate"]
    url = challenge.split('resource_metadata="')[1].split('"')[0]

    async with http_to(gateway) as http:
        response = await http.get(url)

    assert response.status_code == 200
    document = response.json()
    assert document["resource"] == f"{gateway.url}/mcp"
    assert document["authorization_servers"] == [gateway.url]
    assert document["bearer_methods_supported"] == ["header"]


async def metadata_named_for_host(gateway: Gateway, host: str) -> tuple[str, dict[str, Any]]:
    """The challenge's metadata URL and the metadata document, both asked with ``Host``."""
    headers, body = first_request("legacy")
    async with http_to(gateway) as http:
        refused = await http.post("/mcp", json=body, headers=headers | {"Host": host})
        document = await http.get(METADATA_PATH, headers={"Host": host})
    challenge = refused.headers["WWW-Authenticate"]
    assert refused.status_code == 401
    assert document.status_code == 200
    return challenge.split('resource_metadata="')[1].split('"')[0], document.json()


async def test_forged_host_header_never_names_the_resource(
    gateway: Gateway, gateway_settings: Settings
) -> None:
    own = f"http://{gateway_settings.host}:{gateway_settings.port}"
    port = gateway.url.rsplit(":", 1)[1]

    forged_url, forged = await metadata_named_for_host(gateway, "attacker.example")
    allowed_url, allowed = await metadata_named_for_host(gateway, f"localhost:{port}")

    assert forged_url == f"{own}{METADATA_PATH}"
    assert forged["resource"] == f"{own}/mcp"
    assert forged["authorization_servers"] == [own]
    assert "attacker" not in str(forged)
    assert allowed_url == f"http://localhost:{port}{METADATA_PATH}"
    assert allowed["resource"] == f"http://localhost:{port}/mcp"


async def test_public_url_names_the_resource_whatever_the_host(settings: Settings) -> None:
    public = "https://gateway.example.com"
    async with serving(settings.model_copy(update={"public_url": public + "/"})) as gateway:
        port = gateway.url.rsplit(":", 1)[1]
        forged_url, forged = await metadata_named_for_host(gateway, "attacker.example")
        local_url, local = await metadata_named_for_host(gateway, f"127.0.0.1:{port}")

    for url, document in ((forged_url, forged), (local_url, local)):
        assert url == f"{public}{METADATA_PATH}"
        assert document["resource"] == f"{public}/mcp"
        assert document["authorization_servers"] == [public]


@pytest.mark.parametrize("mode", ERAS)
async def test_regenerated_key_is_refused_and_the_new_one_admitted(
    gateway: Gateway, mode: str
) -> None:
    member = await quick_member(gateway)
    async with connect(gateway, member.key, mode) as client:
        await client.list_tools()
    async with http_to(gateway) as http:
        regenerated = await http.post("/api/mcp/regenerate-key", headers=member.jwt_headers)
    assert regenerated.status_code == 200, regenerated.text
    new_key = regenerated.json()["mcp_api_key"]

    old = await post_first_request(gateway, mode, f"Bearer {member.key}")
    async with connect(gateway, new_key, mode) as client:
        tools = await client.list_tools()

    assert_bearer_challenge(old, gateway, "invalid_token")
    assert tools.tools == []


@pytest.mark.parametrize("mode", ERAS)
async def test_disabled_accounts_key_is_refused(gateway: Gateway, mode: str) -> None:
    member = await quick_member(gateway)
    async with transaction(gateway.runtime.sessions) as session:
        account = await accounts.get_account(session, member.account_id)
        await accounts.set_account_active(session, account, False, key_store(gateway.runtime))

    response = await post_first_request(gateway, mode, f"Bearer {member.key}")

    assert_bearer_challenge(response, gateway, "invalid_token")


HOLD_SECONDS = 0.5
"""``credit_hold_seconds`` of the test below: how stale a process's view of an account may be."""


@pytest.fixture
def gateway_settings(settings: Settings) -> Settings:
    """The gateways of this module re-read an account within HOLD_SECONDS of a draw."""
    return settings.model_copy(update={"credit_hold_seconds": HOLD_SECONDS})


@pytest.mark.parametrize("mode", ERAS)
async def test_account_disabled_behind_the_gateways_back_stops_spending_within_the_hold(
    upstream: Upstream, gateway: Gateway, mode: str
) -> None:
    """Disabling through Tollgate refuses the key at once (above); a change made straight in
    the database reaches a process holding the account's credits within its hold time."""
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=upstream.url, price=1)
    member = await quick_member(gateway, credits=1000)

    async with connect(gateway, member.key, mode) as client:
        assert (await client.call_tool("echo__echo", {"text": "a"})).is_error is False
        async with transaction(gateway.runtime.sessions) as session:
            await session.execute(
                update(McpAccount).where(McpAccount.id == member.account_id).values(is_active=False)
            )
        disabled_at = time.monotonic()
        while (refused := await client.call_tool("echo__echo", {"text": "b"})).is_error is False:
            assert time.monotonic() - disabled_at < 4 * HOLD_SECONDS + 1.0
            await anyio.sleep(0.05)

    assert refused.meta is not None
    assert refused.meta["tollgate"]["code"] == "account_inactive"
    assert "disabled" in text_of(refused)
    calls = await wait_settled(gateway.runtime, member.account_id)
    assert all(call.success for call in calls)
    assert await balance(gateway.runtime, member.account_id) == 1000 - len(calls)


@pytest.mark.parametrize("mode", ERAS)
async def test_disabling_an_account_refuses_its_cached_key_in_another_process(
    gateway: Gateway, mode: str
) -> None:
    require_redis()
    member = await quick_member(gateway)
    async with connect(gateway, member.key, mode) as client:
        await client.list_tools()
    async with transaction(gateway.runtime.sessions) as session:
        account = await accounts.get_account(session, member.account_id)
        await accounts.set_account_active(session, account, False, key_store(gateway.runtime))

    response = await post_first_request(gateway, mode, f"Bearer {member.key}")

    assert_bearer_challenge(response, gateway, "invalid_token")


@pytest.mark.parametrize("mode", ERAS)
async def test_callers_key_never_reaches_an_upstream(
    upstream: Upstream,
    stoppable_upstream: StoppableUpstream,
    gateway: Gateway,
    mode: str,
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="open", url=upstream.url)
    static = await register_upstream(
        gateway,
        admin,
        name="locked",
        url=stoppable_upstream.url,
        auth="static",
        headers={"Authorization": "Bearer upstream-secret", "X-Team": "blue"},
    )
    member = await quick_member(gateway, credits=10)

    async with connect(gateway, member.key, mode) as client:
        for name in ("open__echo", "locked__echo"):
            assert (await client.call_tool(name, {"text": member.key})).is_error is False
        await client.list_tools()

    assert static["headers"] == {"Authorization": "********", "X-Team": "********"}
    assert "upstream-secret" not in str(static)
    open_seen, locked_seen = upstream.recorder.seen, stoppable_upstream.headers.seen
    assert open_seen
    assert locked_seen
    assert set(open_seen) == {""}
    assert set(locked_seen) == {"Bearer upstream-secret"}
    assert not [r for r in stoppable_upstream.recorder.seen if "mcp_" in r.authorization]
    assert len(await calls_of(gateway.runtime, member.account_id)) == 2


@pytest.mark.parametrize("mode", ERAS)
async def test_results_carry_tollgates_server_info_not_the_upstreams(
    upstream: Upstream, gateway: Gateway, mode: str
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=upstream.url)
    member = await quick_member(gateway, credits=10)

    async with connect(gateway, member.key, mode) as client:
        results = [
            await client.call_tool("echo__echo", {"text": "hi"}),
            await client.call_tool("echo__fail", {}),
            await client.read_resource("tollgate://echo/res%3A%2F%2Fhello"),
            await client.get_prompt("echo__greet", {"who": "Ada"}),
        ]
        server_info = client.server_info

    for result in results:
        assert result.meta is not None
        assert result.meta[SERVER_INFO_META_KEY] == {"name": "tollgate", "version": __version__}
    if mode == "legacy":
        assert server_info is not None
        assert server_info.name == "tollgate"


async def legacy_access_token(gateway: Gateway, user_id: int) -> str:
    """An access token as issued before ``mcpt_``: ``mcp_...`` like a key, stored by hash."""
    full = new_token("mcp_", 40)
    async with transaction(gateway.runtime.sessions) as session:
        session.add(
            AccessToken(
                user_id=user_id,
                name="from before mcpt_",
                token_hash=hash_token(full),
                token_prefix=full[:12],
                scopes=["lease"],
                is_active=True,
            )
        )
    return full


@pytest.mark.parametrize("mode", ERAS)
async def test_new_account_key_has_the_account_key_prefix_and_opens_mcp(
    gateway: Gateway, mode: str
) -> None:
    member = await quick_member(gateway)

    admitted = await post_first_request(gateway, mode, f"Bearer {member.key}")

    assert member.key.startswith("mcp_")
    assert not member.key.startswith("mcpt_")
    assert admitted.status_code == 200, admitted.text


@pytest.mark.parametrize("mode", ERAS)
async def test_access_token_on_mcp_is_refused_naming_both_kinds(
    gateway: Gateway, mode: str
) -> None:
    member = await quick_member(gateway)
    async with http_to(gateway) as http:
        issued = await http.post(
            "/api/v1/tokens", json={"name": "server"}, headers=member.jwt_headers
        )
    assert issued.status_code == 201, issued.text
    tokens = {
        "new": issued.json()["token"],
        "old": await legacy_access_token(gateway, member.user_id),
    }

    refused = {
        label: await post_first_request(gateway, mode, f"Bearer {token}")
        for label, token in tokens.items()
    }
    unknown = await post_first_request(gateway, mode, "Bearer mcp_" + "x" * 32)

    assert tokens["new"].startswith("mcpt_")
    for label, response in refused.items():
        assert_bearer_challenge(response, gateway, "invalid_token")
        description = response.json()["error_description"]
        assert "an access token (mcpt_...)" in description, label
        assert "an account key (mcp_...)" in description, label
    assert_bearer_challenge(unknown, gateway, "invalid_token")
    assert unknown.json()["error_description"] == (
        "An active Tollgate account key (mcp_...) is required"
    )
