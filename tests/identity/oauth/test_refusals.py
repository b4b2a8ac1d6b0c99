"""What the authorization server and ``/mcp`` refuse, each with the error the specs name."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import update
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.gateway.conftest import Gateway, Member, http_to
from tests.gateway.upstream import serve_in_thread
from tests.identity.oauth.conftest import (
    authorize_url,
    connected,
    exchange,
    pkce,
    query_of,
    refresh,
    register,
    sign_in_and_consent,
)
from tollgate.core.database import transaction
from tollgate.identity.oauth.models import OAuthToken

REDIRECT = "http://127.0.0.1:9/callback"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


async def mcp_status(http: httpx.AsyncClient, path: str, token: str) -> httpx.Response:
    """``initialize`` on an MCP path with ``token``."""
    headers = MCP_HEADERS | {"Authorization": f"Bearer {token}"}
    return await http.post(path, json=INITIALIZE, headers=headers)


async def code_for(
    gateway: Gateway, http: httpx.AsyncClient, member: Member
) -> tuple[str, str, str]:
    """A registered client's id, a fresh code and the code's verifier."""
    client = await register(http, REDIRECT)
    verifier, challenge = pkce()
    url = await authorize_url(gateway, client["client_id"], REDIRECT, challenge)
    code = query_of(await sign_in_and_consent(http, url, member.email))["code"]
    return client["client_id"], code, verifier


async def test_wrong_pkce_verifier_is_invalid_grant(oauth_gateway: Gateway, member: Member) -> None:
    async with http_to(oauth_gateway) as http:
        client_id, code, _ = await code_for(oauth_gateway, http, member)
        refused = await exchange(http, client_id, code, pkce()[0], REDIRECT)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"


async def test_reused_code_is_refused_and_revokes_what_it_issued(
    oauth_gateway: Gateway, member: Member
) -> None:
    async with http_to(oauth_gateway) as http:
        client_id, code, verifier = await code_for(oauth_gateway, http, member)
        first = await exchange(http, client_id, code, verifier, REDIRECT)
        assert first.status_code == 200, first.text
        assert (await mcp_status(http, "/mcp", first.json()["access_token"])).status_code == 200
        again = await exchange(http, client_id, code, verifier, REDIRECT)
        after = await mcp_status(http, "/mcp", first.json()["access_token"])
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    assert after.status_code == 401
    assert after.json()["error"] == "invalid_token"


async def test_reused_refresh_token_revokes_the_whole_family(
    oauth_gateway: Gateway, member: Member
) -> None:
    async with http_to(oauth_gateway) as http:
        client_id, tokens = await connected(oauth_gateway, member, http)
        rotated = await refresh(http, client_id, tokens.refresh)
        assert rotated.status_code == 200, rotated.text
        newest = rotated.json()
        assert (await mcp_status(http, "/mcp", newest["access_token"])).status_code == 200
        replayed = await refresh(http, client_id, tokens.refresh)
        successor = await refresh(http, client_id, newest["refresh_token"])
        access = await mcp_status(http, "/mcp", newest["access_token"])
        grants = await http.get("/api/v1/oauth/grants", headers=member.jwt_headers)
    assert replayed.status_code == 400
    assert replayed.json()["error"] == "invalid_grant"
    assert successor.status_code == 400
    assert successor.json()["error"] == "invalid_grant"
    assert access.status_code == 401
    assert grants.json() == []


async def test_token_for_another_resource_is_refused_on_mcp(
    oauth_gateway: Gateway, member: Member
) -> None:
    async with http_to(oauth_gateway) as http:
        resource = f"{oauth_gateway.url}/servers/maths/mcp"
        _, tokens = await connected(oauth_gateway, member, http, resource=resource)
        refused = await mcp_status(http, "/mcp", tokens.access)
    assert refused.status_code == 401
    assert refused.json() == {
        "error": "invalid_token",
        "error_description": "This OAuth access token was issued for another resource",
    }
    assert "resource_metadata=" in refused.headers["www-authenticate"]


async def test_authorizing_a_foreign_resource_is_invalid_target(
    oauth_gateway: Gateway, member: Member
) -> None:
    async with http_to(oauth_gateway) as http:
        client = await register(http, REDIRECT)
        _, challenge = pkce()
        url = await authorize_url(
            oauth_gateway,
            client["client_id"],
            REDIRECT,
            challenge,
            resource="https://elsewhere.example/mcp",
        )
        answer = await http.get(url)
    assert answer.status_code == 302
    params = query_of(answer.headers["location"])
    assert params["error"] == "invalid_target"
    assert params["state"] == "state-123"


async def test_expired_access_token_is_refused(oauth_gateway: Gateway, member: Member) -> None:
    async with http_to(oauth_gateway) as http:
        _, tokens = await connected(oauth_gateway, member, http)
        async with transaction(oauth_gateway.runtime.sessions) as session:
            from datetime import UTC, datetime, timedelta

            await session.execute(
                update(OAuthToken)
                .where(OAuthToken.token_prefix == tokens.access[:12])
                .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
        refused = await mcp_status(http, "/mcp", tokens.access)
    assert refused.status_code == 401
    assert refused.json()["error_description"] == "This access token has expired"


async def test_redirect_uri_mismatch_is_refused_without_redirecting(
    oauth_gateway: Gateway,
) -> None:
    async with http_to(oauth_gateway) as http:
        client = await register(http, REDIRECT)
        _, challenge = pkce()
        url = await authorize_url(
            oauth_gateway, client["client_id"], "http://127.0.0.1:9/other", challenge
        )
        answer = await http.get(url)
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"
    assert "location" not in answer.headers


async def test_plain_http_redirect_uri_off_loopback_cannot_register(
    oauth_gateway: Gateway,
) -> None:
    async with http_to(oauth_gateway) as http:
        answer = await http.post("/register", json={"redirect_uris": ["http://example.com/cb"]})
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_redirect_uri"


async def test_revoked_grant_stops_its_token_at_once(
    oauth_gateway: Gateway, member: Member
) -> None:
    async with http_to(oauth_gateway) as http:
        _, tokens = await connected(oauth_gateway, member, http)
        assert (await mcp_status(http, "/mcp", tokens.access)).status_code == 200
        grants = (await http.get("/api/v1/oauth/grants", headers=member.jwt_headers)).json()
        deleted = await http.delete(
            f"/api/v1/oauth/grants/{grants[0]['id']}", headers=member.jwt_headers
        )
        refused = await mcp_status(http, "/mcp", tokens.access)
    assert deleted.status_code == 204
    assert refused.status_code == 401


@pytest.fixture
def lying_document() -> Iterator[str]:
    """A metadata document whose ``client_id`` is not its own URL."""

    async def document(request: Request) -> JSONResponse:
        return JSONResponse(
            {"client_id": "https://someone-else.example/client.json", "redirect_uris": [REDIRECT]}
        )

    url, stop = serve_in_thread(Starlette(routes=[Route("/client.json", document)]), "")
    try:
        yield f"{url}/client.json"
    finally:
        stop()


async def test_metadata_document_naming_another_client_id_is_invalid_client(
    oauth_gateway: Gateway, lying_document: str
) -> None:
    async with http_to(oauth_gateway) as http:
        _, challenge = pkce()
        answer = await http.get(
            await authorize_url(oauth_gateway, lying_document, REDIRECT, challenge)
        )
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_client"
    assert "differs" in answer.json()["error_description"]
