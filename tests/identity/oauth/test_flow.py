"""The authorization code flow with an HTTP client as the browser: metadata, registration,
sign-in, consent, tokens, and the token acting as the user's MCP account on ``/mcp``."""

from __future__ import annotations

from tests.gateway.conftest import (
    Gateway,
    Member,
    Upstream,
    balance,
    http_to,
    mcp_client_at,
    new_member,
    register_upstream,
    text_of,
    wait_settled,
)
from tests.identity.oauth.conftest import connected, query_of, refresh
from tollgate.identity.models import Role


async def test_metadata_names_tollgate_as_its_own_authorization_server(
    oauth_gateway: Gateway,
) -> None:
    async with http_to(oauth_gateway) as http:
        resource = (await http.get("/.well-known/oauth-protected-resource/mcp")).json()
        server = (await http.get("/.well-known/oauth-authorization-server")).json()
        openid = (await http.get("/.well-known/openid-configuration")).json()
    base = oauth_gateway.url
    assert resource["resource"] == f"{base}/mcp"
    assert resource["authorization_servers"] == [base]
    assert server["issuer"] == base
    assert server["authorization_endpoint"] == f"{base}/authorize"
    assert server["token_endpoint"] == f"{base}/token"
    assert server["registration_endpoint"] == f"{base}/register"
    assert server["code_challenge_methods_supported"] == ["S256"]
    assert server["client_id_metadata_document_supported"] is True
    assert server["authorization_response_iss_parameter_supported"] is True
    assert openid == server


async def test_oauth_token_acts_as_the_users_account_and_is_charged(
    oauth_gateway: Gateway, upstream: Upstream
) -> None:
    admin = await new_member(oauth_gateway, role=Role.ADMIN)
    member: Member = await new_member(oauth_gateway)
    await register_upstream(oauth_gateway, admin, name="echo", url=upstream.url, price=3)
    before = await balance(oauth_gateway.runtime, member.account_id)
    async with http_to(oauth_gateway) as http:
        _, tokens = await connected(oauth_gateway, member, http)
    assert tokens.access.startswith("mcpat_")
    assert tokens.body["token_type"] == "Bearer"
    assert tokens.body["expires_in"] == 3600
    async with mcp_client_at(oauth_gateway.mcp_url, tokens.access) as client:
        result = await client.call_tool("echo__echo", {"text": "through oauth"})
    assert text_of(result) == "through oauth"
    calls = await wait_settled(oauth_gateway.runtime, member.account_id)
    assert [c.tool_name for c in calls] == ["echo__echo"]
    assert await balance(oauth_gateway.runtime, member.account_id) == before - 3


async def test_authorization_response_carries_state_and_issuer(
    oauth_gateway: Gateway, member: Member
) -> None:
    from tests.identity.oauth.conftest import authorize_url, pkce, register, sign_in_and_consent

    async with http_to(oauth_gateway) as http:
        redirect_uri = "http://127.0.0.1:9/cb"
        client = await register(http, redirect_uri)
        _, challenge = pkce()
        url = await authorize_url(
            oauth_gateway, client["client_id"], redirect_uri, challenge, state="xyz"
        )
        landed = await sign_in_and_consent(http, url, member.email)
    assert landed.startswith(redirect_uri + "?")
    params = query_of(landed)
    assert params["state"] == "xyz"
    assert params["iss"] == oauth_gateway.url
    assert params["code"].startswith("mcpac_")


async def test_refresh_rotates_and_the_new_access_token_works(
    oauth_gateway: Gateway, member: Member
) -> None:
    async with http_to(oauth_gateway) as http:
        client_id, tokens = await connected(oauth_gateway, member, http)
        rotated = await refresh(http, client_id, tokens.refresh)
    assert rotated.status_code == 200, rotated.text
    body = rotated.json()
    assert body["refresh_token"] != tokens.refresh
    async with mcp_client_at(oauth_gateway.mcp_url, body["access_token"]) as client:
        assert (await client.list_tools()).tools is not None
