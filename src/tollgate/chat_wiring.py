"""How the chat reaches its tools: through this process's gateway as the user (every call
metered to their account, with their own broker credentials, recorded like any other), or,
where settings allow it, another MCP server whose address passes the upstream checks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import mcp_types as types
from mcp import MCPError

from tollgate.accounts.service import find_account_for_user
from tollgate.chat.conversation import ToolSpec
from tollgate.chat.loop import ToolOutcome, ToolSource
from tollgate.chat.service import ToolSources
from tollgate.chat.store import SessionConfig
from tollgate.chat.tools import external_tools, outcome_of, spec_of
from tollgate.core.errors import BadRequest, Forbidden, ServiceUnavailable, TollgateError
from tollgate.core.runtime import Runtime
from tollgate.gateway.addresses import default_base_url
from tollgate.gateway.guards import check_upstream_url
from tollgate.gateway.hub import Gateway
from tollgate.gateway.server import MCP_PATH, SERVER_FORBIDDEN
from tollgate.gateway.servers import Memberships, server_of_path
from tollgate.gateway.views import View
from tollgate.identity.credentials import AccountKeyCaller
from tollgate.identity.models import User

INVALID_SERVER_URL = "Invalid server URL"
"""Seed 003's answer for a server URL the chat may not use."""


class GatewayTools:
    """The tools one path of this Tollgate serves, called as one user's account."""

    def __init__(self, gateway: Gateway, caller: AccountKeyCaller, view: View) -> None:
        self._gateway = gateway
        self._caller = caller
        self._view = view

    async def tools(self) -> list[ToolSpec]:
        """See :class:`tollgate.chat.loop.ToolSource`."""
        listed = await self._gateway.tools_for(self._caller, self._view)
        return [spec_of(tool) for tool in listed.tools]

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        """See :class:`tollgate.chat.loop.ToolSource`: metered like any ``/mcp`` call."""
        gateway_name = self._view.tool_name(name)
        entry = self._gateway.catalogue.tool(gateway_name) if gateway_name else None
        if gateway_name is None or entry is None:
            return ToolOutcome(f"Unknown tool: {name}", True, 0)
        try:
            result = await self._gateway.call_tool(self._caller, gateway_name, arguments)
        except MCPError as exc:
            return ToolOutcome(f"The tool failed: {exc.message}", True, 0)
        if isinstance(result, types.InputRequiredResult):
            return ToolOutcome("The tool asked for input, which the chat cannot give", True, 0)
        refused_or_refunded = "tollgate" in (result.meta or {})
        return outcome_of(result, 0 if refused_or_refunded else entry.price)


def own_path(runtime: Runtime, url: str | None) -> str | None:
    """The path on this Tollgate a session's server URL names (``/mcp`` when none is given);
    None for another server."""
    if not url:
        return MCP_PATH
    if url.startswith("/"):
        return url.rstrip("/")
    settings = runtime.settings
    for base in {settings.public_url.rstrip("/"), default_base_url(settings)} - {""}:
        if url.startswith(base + "/"):
            return url[len(base) :].rstrip("/")
    return None


async def _account_caller(runtime: Runtime, user: User) -> AccountKeyCaller:
    async with runtime.sessions() as session:
        account = await find_account_for_user(session, user.id)
    if account is None or not account.is_active:
        raise BadRequest(
            "Enable your MCP account first: the chat's tool calls are charged to it",
            code="mcp_not_enabled",
        )
    return AccountKeyCaller(account.id, user.id, user.email)


def chat_tool_sources(runtime: Runtime, gateway: Gateway) -> ToolSources:
    """What :class:`tollgate.chat.service.ChatService` opens a session's tools with."""
    memberships = Memberships(runtime.sessions)

    async def gateway_tools(user: User, path: str) -> GatewayTools:
        name = server_of_path(path)
        view = gateway.root if path == MCP_PATH else gateway.view(name) if name else None
        if view is None:
            raise BadRequest(INVALID_SERVER_URL, code="invalid_server_url")
        if view.spec is not None and not await memberships.admitted(view.spec, user.id):
            raise Forbidden(SERVER_FORBIDDEN, code="server_forbidden")
        return GatewayTools(gateway, await _account_caller(runtime, user), view)

    @asynccontextmanager
    async def open_tools(user: User, config: SessionConfig) -> AsyncIterator[ToolSource]:
        path = own_path(runtime, config.server_url)
        if path is not None:
            yield await gateway_tools(user, path)
            return
        async with AsyncExitStack() as stack:
            yield await _external(runtime, stack, config)

    return open_tools


async def _external(runtime: Runtime, stack: AsyncExitStack, config: SessionConfig) -> ToolSource:
    """A session to another MCP server, when settings allow it and its address passes."""
    url = config.server_url or ""
    if not runtime.settings.chat_allow_external_servers:
        raise BadRequest(INVALID_SERVER_URL, code="server_not_allowed")
    try:
        await check_upstream_url(runtime.settings, url)
    except TollgateError as exc:
        raise BadRequest(INVALID_SERVER_URL, code="invalid_server_url") from exc
    try:
        return await stack.enter_async_context(external_tools(url, config.server_token))
    except Exception as exc:  # the SDK's task groups wrap what failed: any is "cannot connect"
        raise ServiceUnavailable(
            "Failed to connect to MCP server. Please verify the server URL and authentication.",
            code="mcp_server_unavailable",
        ) from exc
