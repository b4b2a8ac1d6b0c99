"""What an upstream may be: addresses in denied networks (cloud metadata above all) or
outside an allow list are refused, the upstream's own words never come back in our errors,
and this Tollgate is never its own upstream, however it is reached."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.gateway.conftest import (
    Gateway,
    Upstream,
    connect,
    http_to,
    quick_member,
    register_upstream,
    serving,
    tool_names,
)
from tests.gateway.upstream import ALLOW_LOCAL, make_server, serve_in_thread
from tollgate.core.errors import Unprocessable
from tollgate.core.settings import Settings
from tollgate.gateway.guards import check_upstream_url
from tollgate.identity.models import Role

METADATA_ADDRESSES = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/latest/meta-data/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://[fe80::1]:8080/mcp",
    "http://0.0.0.0:9/mcp",
    "http://[::]:9/mcp",
]
"""Link-local (where cloud metadata services answer) and unspecified addresses."""


@pytest.mark.parametrize("url", METADATA_ADDRESSES)
async def test_metadata_and_unspecified_addresses_are_denied_by_default(url: str) -> None:
    with pytest.raises(Unprocessable) as refused:
        await check_upstream_url(Settings(), url)

    assert refused.value.code == "upstream_address_denied"


async def test_loopback_and_private_upstreams_are_allowed_by_default() -> None:
    for url in ("http://127.0.0.1:9/mcp", "http://10.1.2.3/mcp", "http://[::1]:9/mcp"):
        await check_upstream_url(Settings(), url)


async def post_upstream(gateway: Gateway, admin: Any, body: dict[str, Any]) -> Any:
    async with http_to(gateway) as http:
        return await http.post("/api/v1/upstreams", json=body, headers=admin.jwt_headers)


async def test_upstream_resolving_into_a_denied_network_is_refused(
    settings: Settings, upstream: Upstream
) -> None:
    # Loopback denied here, by name too: ``localhost`` resolves there.
    no_loopback = settings.model_copy(
        update={"upstream_denied_networks": ["169.254.0.0/16", "127.0.0.0/8", "::1/128"]}
    )
    async with serving(no_loopback) as gateway:
        admin = await quick_member(gateway, role=Role.ADMIN)
        by_address = await post_upstream(gateway, admin, {"name": "echo", "url": upstream.url})
        by_name = await post_upstream(
            gateway, admin, {"name": "echo", "url": upstream.url.replace("127.0.0.1", "localhost")}
        )
        async with http_to(gateway) as http:
            listed = await http.get("/api/v1/upstreams", headers=admin.jwt_headers)

    for response in (by_address, by_name):
        assert response.status_code == 422, response.text
        assert response.json()["detail"]["code"] == "upstream_address_denied"
    assert listed.json() == []
    assert upstream.recorder.seen == []


async def test_upstream_outside_the_allow_list_is_refused(
    settings: Settings, upstream: Upstream
) -> None:
    only_private = settings.model_copy(update={"upstream_allowed_hosts": ["10.0.0.0/8"]})
    async with serving(only_private) as gateway:
        admin = await quick_member(gateway, role=Role.ADMIN)
        refused = await post_upstream(gateway, admin, {"name": "echo", "url": upstream.url})
    allowed = settings.model_copy(update={"upstream_allowed_hosts": ["*.example.com", "127.0.0.1"]})
    async with serving(allowed) as gateway:
        admin = await quick_member(gateway, role=Role.ADMIN)
        added = await register_upstream(gateway, admin, name="echo", url=upstream.url)
        async with http_to(gateway) as http:
            patched_web = await http.patch(
                "/api/v1/upstreams/echo",
                json={"url": "http://10.9.9.9:9/mcp"},
                headers=admin.jwt_headers,
            )

    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"]["code"] == "upstream_address_not_allowed"
    assert added["state"] == "up"
    assert patched_web.status_code == 422, patched_web.text
    assert patched_web.json()["detail"]["code"] == "upstream_address_not_allowed"


MARKER = f"MARKER-{uuid.uuid4().hex}"
"""Text only the misbehaving upstream knows: it must never appear in our answers."""


def answering(status: int, media_type: str, body: str) -> Starlette:
    """An HTTP server that answers every request the same, whatever it is."""

    async def answer(request: Request) -> Response:
        return Response(body, status_code=status, media_type=media_type)

    return Starlette(routes=[Route("/mcp", answer, methods=["GET", "POST", "DELETE"])])


@pytest.mark.parametrize(
    ("status", "media_type", "body", "expected"),
    [
        (200, "application/json", f'{{"secret": "{MARKER}"}}', "the upstream failed"),
        (500, "text/plain", f"internal details {MARKER}", "the upstream answered HTTP 500"),
        (401, "application/json", f'{{"error": "{MARKER}"}}', "the upstream answered HTTP 401"),
    ],
)
async def test_upstream_answer_never_shows_in_our_errors(
    settings: Settings, status: int, media_type: str, body: str, expected: str
) -> None:
    url, stop = serve_in_thread(answering(status, media_type, body))
    try:
        async with serving(settings) as gateway:
            admin = await quick_member(gateway, role=Role.ADMIN)
            async with http_to(gateway) as http:
                added = await http.post(
                    "/api/v1/upstreams",
                    json={"name": "odd", "url": url},
                    headers=admin.jwt_headers,
                )
                refreshed = await http.post(
                    "/api/v1/upstreams/odd/refresh", headers=admin.jwt_headers
                )
                listed = await http.get("/api/v1/upstreams", headers=admin.jwt_headers)
    finally:
        stop()

    assert added.status_code == 201, added.text
    assert added.json()["state"] == "down"
    assert added.json()["last_error"].startswith(expected), added.json()["last_error"]
    assert refreshed.status_code == 503, refreshed.text
    for response in (added, refreshed, listed):
        assert MARKER not in response.text


class FailingAfterUp:
    """The echo upstream, until told to answer every request with an error page."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.failing = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.failing and scope["type"] == "http":
            await Response(f"stack trace {MARKER}", 500)(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def test_refresh_error_names_the_status_only(settings: Settings) -> None:
    failing = FailingAfterUp(
        make_server("echo").streamable_http_app(transport_security=ALLOW_LOCAL)
    )
    url, stop = serve_in_thread(failing)
    try:
        async with serving(settings) as gateway:
            admin = await quick_member(gateway, role=Role.ADMIN)
            added = await register_upstream(gateway, admin, name="flaky", url=url)
            failing.failing = True
            async with http_to(gateway) as http:
                refreshed = await http.post(
                    "/api/v1/upstreams/flaky/refresh", headers=admin.jwt_headers
                )
    finally:
        stop()

    assert added["state"] == "up"
    assert refreshed.status_code == 503, refreshed.text
    assert refreshed.json()["detail"]["code"] == "upstream_unavailable"
    assert "HTTP 500" in refreshed.json()["detail"]["message"]
    assert MARKER not in refreshed.text


@asynccontextmanager
async def tcp_forwarder(port: int) -> AsyncIterator[tuple[int, list[int]]]:
    """A plain TCP proxy on 127.0.0.1 to ``port`` (a gateway behind another address); yields
    its port and a list that counts the connections it carried."""
    carried: list[int] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def forward(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        carried.append(1)
        server_r, server_w = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))

    server = await asyncio.start_server(forward, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], carried
    finally:
        server.close()


def gateway_port(gateway: Gateway) -> int:
    return int(gateway.url.rsplit(":", 1)[1])


async def test_gateway_is_refused_as_its_own_upstream(gateway: Gateway, upstream: Upstream) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    member = await quick_member(gateway, credits=10)
    await register_upstream(gateway, admin, name="echo", url=upstream.url)
    async with connect(gateway, member.key) as client:
        before = await tool_names(client)
    port = gateway_port(gateway)
    own_urls = [gateway.mcp_url, f"http://localhost:{port}/mcp", f"http://[::1]:{port}/mcp"]

    async with tcp_forwarder(port) as (proxy_port, carried):
        own_urls.append(f"http://127.0.0.1:{proxy_port}/mcp")  # ourselves, at another address
        answers = [
            await post_upstream(
                gateway,
                admin,
                {
                    "name": "loop",
                    "url": url,
                    "auth": "static",
                    "headers": {"Authorization": f"Bearer {member.key}"},
                },
            )
            for url in own_urls
        ]
    async with connect(gateway, member.key) as client:
        after = await tool_names(client)
    async with http_to(gateway) as http:
        listed = await http.get("/api/v1/upstreams", headers=admin.jwt_headers)

    for url, answer in zip(own_urls, answers, strict=True):
        assert answer.status_code == 422, (url, answer.text)
        assert answer.json()["detail"]["code"] == "upstream_is_self", url
    assert carried, "the proxied attempt never reached the gateway"
    assert after == before
    assert "echo__echo" in after
    assert [u["name"] for u in listed.json()] == ["echo"]


async def test_changing_an_upstream_into_the_gateway_itself_is_refused_and_disables_it(
    gateway: Gateway, upstream: Upstream
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    member = await quick_member(gateway, credits=10)
    await register_upstream(
        gateway,
        admin,
        name="echo",
        url=upstream.url,
        auth="static",
        headers={"Authorization": f"Bearer {member.key}"},
    )
    async with tcp_forwarder(gateway_port(gateway)) as (proxy_port, _), http_to(gateway) as http:
        direct = await http.patch(
            "/api/v1/upstreams/echo", json={"url": gateway.mcp_url}, headers=admin.jwt_headers
        )
        proxied = await http.patch(
            "/api/v1/upstreams/echo",
            json={"url": f"http://127.0.0.1:{proxy_port}/mcp"},
            headers=admin.jwt_headers,
        )
        described = await http.get("/api/v1/upstreams/echo", headers=admin.jwt_headers)
    async with connect(gateway, member.key) as client:
        after = await tool_names(client)

    for answer in (direct, proxied):
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"]["code"] == "upstream_is_self"
    assert described.json()["enabled"] is False
    assert not any(name.startswith("echo__") for name in after)
