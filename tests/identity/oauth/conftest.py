"""OAuth fixtures: a Tollgate on 127.0.0.1 whose public URL is its own address (so the
resource and the issuer are what clients see), a member who signs in with a password, and
the browser's part of the flow (sign-in and consent pages) done with an HTTP client."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import uvicorn

from tests.conftest import PASSWORD
from tests.gateway.conftest import Gateway, Member, new_member
from tests.gateway.conftest import upstream as upstream  # the test upstream, as a fixture here
from tests.gateway.upstream import STARTUP_SECONDS, started
from tollgate.app import create_app
from tollgate.core.runtime import Runtime
from tollgate.core.settings import Settings

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
REQUEST = re.compile(r'name="request" value="([^"]+)"')


def _serve(app: Any, sock: socket.socket) -> Callable[[], None]:
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_SECONDS
    while not started(server, thread):
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    return stop


@pytest.fixture
async def oauth_gateway(settings: Settings) -> AsyncIterator[Gateway]:
    """Tollgate served on 127.0.0.1 with ``TOLLGATE_PUBLIC_URL`` set to that address, and
    loopback client metadata documents allowed (this test setting only)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    served = settings.model_copy(
        update={"public_url": url, "oauth_client_metadata_allow_loopback": True}
    )
    app = create_app(served, configure_logs=False)
    stop = await asyncio.to_thread(_serve, app, sock)
    runtime = Runtime.build(served)
    try:
        yield Gateway(url, runtime, app)
    finally:
        await runtime.close()
        await asyncio.to_thread(stop)


@pytest.fixture
async def member(oauth_gateway: Gateway) -> Member:
    """A user with a password and an enabled MCP account."""
    return await new_member(oauth_gateway)


def pkce() -> tuple[str, str]:
    """A PKCE verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


def query_of(url: str) -> dict[str, str]:
    """A URL's query parameters (one value each)."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def register(http: httpx.AsyncClient, redirect_uri: str, **extra: Any) -> dict[str, Any]:
    """Dynamic client registration of a public client."""
    body = {"redirect_uris": [redirect_uri], "token_endpoint_auth_method": "none"} | extra
    response = await http.post("/register", json=body)
    assert response.status_code == 201, response.text
    client: dict[str, Any] = response.json()
    return client


async def sign_in_and_consent(
    http: httpx.AsyncClient, authorize_url: str, login: str, decision: str = "allow"
) -> str:
    """What a person does in the browser: open the authorize URL, sign in, consent.
    Returns where the browser is sent at the end (the client's redirect URI)."""
    started_at = await http.get(authorize_url)
    assert started_at.status_code == 302, started_at.text
    login_page = await http.get(started_at.headers["location"])
    assert login_page.status_code == 200, login_page.text
    signed_in = await http.post(
        "/oauth/login",
        data={
            "request": _field(REQUEST, login_page.text),
            "csrf": _field(CSRF, login_page.text),
            "username": login,
            "password": PASSWORD,
        },
    )
    assert signed_in.status_code == 303, signed_in.text
    consent_page = await http.get(signed_in.headers["location"])
    assert consent_page.status_code == 200, consent_page.text
    assert "Allow" in consent_page.text
    decided = await http.post(
        "/oauth/consent",
        data={
            "request": _field(REQUEST, consent_page.text),
            "csrf": _field(CSRF, consent_page.text),
            "decision": decision,
        },
    )
    assert decided.status_code == 303, decided.text
    return decided.headers["location"]


def _field(pattern: re.Pattern[str], html: str) -> str:
    found = pattern.search(html)
    assert found is not None, html
    return found.group(1)


@dataclass
class Tokens:
    """What ``/token`` answered."""

    access: str
    refresh: str
    body: dict[str, Any]


async def authorize_url(
    gateway: Gateway,
    client_id: str,
    redirect_uri: str,
    challenge: str,
    *,
    resource: str | None = None,
    state: str = "state-123",
) -> str:
    """An ``/authorize`` URL for the code flow with PKCE S256."""
    params = httpx.QueryParams(
        response_type="code",
        client_id=client_id,
        redirect_uri=redirect_uri,
        code_challenge=challenge,
        code_challenge_method="S256",
        state=state,
        resource=resource or gateway.mcp_url,
    )
    return f"{gateway.url}/authorize?{params}"


async def exchange(
    http: httpx.AsyncClient, client_id: str, code: str, verifier: str, redirect_uri: str
) -> httpx.Response:
    """The token request for a code."""
    return await http.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "client_id": client_id,
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": redirect_uri,
        },
    )


async def refresh(http: httpx.AsyncClient, client_id: str, token: str) -> httpx.Response:
    """The token request for a refresh token."""
    return await http.post(
        "/token",
        data={"grant_type": "refresh_token", "client_id": client_id, "refresh_token": token},
    )


async def connected(
    gateway: Gateway, member: Member, http: httpx.AsyncClient, *, resource: str | None = None
) -> tuple[str, Tokens]:
    """A public client registered, authorized by ``member`` and holding tokens."""
    redirect_uri = "http://127.0.0.1:9/callback"
    client = await register(http, redirect_uri, client_name="Test client")
    verifier, challenge = pkce()
    url = await authorize_url(
        gateway, client["client_id"], redirect_uri, challenge, resource=resource
    )
    code = query_of(await sign_in_and_consent(http, url, member.email))["code"]
    answer = await exchange(http, client["client_id"], code, verifier, redirect_uri)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return client["client_id"], Tokens(body["access_token"], body["refresh_token"], body)
