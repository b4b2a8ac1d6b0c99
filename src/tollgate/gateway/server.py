"""The ``/mcp`` endpoint: an MCP server (both protocol eras) in front of the gateway.

Requests are authenticated before they reach the MCP layer (:class:`BearerGate`); the
handlers read the caller from a context variable the gate sets. Catalogue changes reach
connected clients as ``notifications/*/list_changed`` on legacy sessions and as events on
2026-07-28 ``subscriptions/listen`` streams.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import mcp_types as types
from mcp import MCPError
from mcp.server import NotificationOptions, Server, ServerRequestContext
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult
from mcp.server.models import InitializationOptions
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
    PromptsListChanged,
    ResourcesListChanged,
    ToolsListChanged,
)
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.dispatcher import ProgressFnT
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from tollgate import __version__
from tollgate.accounts.keys import KeyStore
from tollgate.core.errors import Unauthorized, bearer_refusal, not_found_response
from tollgate.gateway.hub import Gateway
from tollgate.gateway.pages import page
from tollgate.identity.credentials import (
    ACCOUNT_KEY_ONLY,
    ACCOUNT_KEY_PREFIX,
    AccountKeyCaller,
    Credentials,
    WrongKind,
)

logger = logging.getLogger(__name__)

MCP_PATH = "/mcp"

PROTECTED_RESOURCE_PATH = "/.well-known/oauth-protected-resource/mcp"

KEY_REQUIRED = f"An active Tollgate account key ({ACCOUNT_KEY_PREFIX}...) is required"
"""Why ``/mcp`` refused a request (an access token is told so by name instead)."""

current_caller: contextvars.ContextVar[AccountKeyCaller | None] = contextvars.ContextVar(
    "tollgate_mcp_caller", default=None
)

R = TypeVar("R")


def _caller() -> AccountKeyCaller:
    caller = current_caller.get()
    if caller is None:
        raise MCPError(types.INVALID_REQUEST, "Not authenticated")
    return caller


class _GatewayServer(Server[Any]):
    """Advertises ``listChanged`` on the handshake era (the SDK's default says false)."""

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options
            or NotificationOptions(
                tools_changed=True, prompts_changed=True, resources_changed=True
            ),
            experimental_capabilities,
            extensions,
        )


def _guarded(handler: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
    """Turn unexpected failures into a plain JSON-RPC internal error (never a leaked message)."""

    async def run(ctx: ServerRequestContext[Any], params: Any) -> R:
        try:
            return await handler(ctx, params)
        except MCPError:
            raise
        except Exception as exc:
            logger.exception("MCP handler %s failed", ctx.method)
            raise MCPError(types.INTERNAL_ERROR, "Internal error") from exc

    return run


class McpEndpoint:
    """The MCP server of one process, wired to its gateway."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.bus = InMemorySubscriptionBus()
        self.listen = ListenHandler(self.bus)
        self._legacy_connections: set[Connection] = set()
        self._page_size = gateway.runtime.settings.list_page_size
        catalogue = gateway.catalogue
        self.server = _GatewayServer(
            "tollgate",
            version=__version__,
            title="Tollgate",
            instructions="Tools of many MCP servers behind one key; names are <server>__<tool>.",
            on_list_tools=_guarded(self._list_tools),
            on_call_tool=_guarded(self._call_tool),
            on_list_resources=_guarded(self._list_resources),
            on_list_resource_templates=_guarded(self._list_resource_templates),
            on_read_resource=_guarded(self._read_resource),
            on_list_prompts=_guarded(self._list_prompts),
            on_get_prompt=_guarded(self._get_prompt),
            on_completion=_guarded(self._complete),
            on_subscriptions_listen=self.listen,
            get_tool_input_schema=catalogue.input_schema,
        )
        self.server.middleware.append(self._track_legacy_sessions)
        gateway.on_change(self.notify_changed)

    def asgi_app(self, allowed_hosts: list[str]) -> Starlette:
        """The SDK's Streamable HTTP app at ``/mcp`` (mount it at ``/``, after other routes)."""
        origins = [f"http://{h}" for h in allowed_hosts] + [f"https://{h}" for h in allowed_hosts]
        return self.server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            transport_security=TransportSecuritySettings(
                enable_dns_rebinding_protection=True,
                allowed_hosts=allowed_hosts,
                allowed_origins=origins,
            ),
        )

    async def _track_legacy_sessions(
        self, ctx: ServerRequestContext[Any], call_next: CallNext
    ) -> HandlerResult:
        result = await call_next(ctx)
        connection: Connection = ctx.session._connection  # the SDK has no public accessor
        if (
            ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS
            and connection.has_standalone_channel
            and connection not in self._legacy_connections
        ):
            self._legacy_connections.add(connection)
            connection.exit_stack.callback(self._legacy_connections.discard, connection)
        return result

    async def notify_changed(self, kind: str) -> None:
        """Tell every connected client that ``kind`` (tools, resources, prompts) changed."""
        event: ToolsListChanged | PromptsListChanged | ResourcesListChanged
        if kind == "tools":
            event = ToolsListChanged()
        elif kind == "prompts":
            event = PromptsListChanged()
        else:
            event = ResourcesListChanged()
        await self.bus.publish(event)
        for connection in list(self._legacy_connections):
            if kind == "tools":
                await connection.send_tool_list_changed()
            elif kind == "prompts":
                await connection.send_prompt_list_changed()
            else:
                await connection.send_resource_list_changed()

    async def _list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        _caller()
        result = self.gateway.catalogue.tools_result()
        if len(result.tools) <= self._page_size and not (params and params.cursor):
            return result  # built once per change: the common case copies nothing
        tools, after = page(result.tools, params, self._page_size, "tools")
        return types.ListToolsResult(tools=tools, next_cursor=after)

    async def _call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        request = ctx.request
        session_id = request.headers.get("mcp-session-id") if request is not None else None
        return await self.gateway.call_tool(
            _caller(),
            params.name,
            params.arguments,
            protocol_version=ctx.protocol_version,
            session_id=session_id,
            progress=_progress_relay(ctx, params),
        )

    async def _list_resources(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        _caller()
        found = self.gateway.catalogue.resources()
        resources, after = page(found, params, self._page_size, "resources")
        return types.ListResourcesResult(resources=resources, next_cursor=after)

    async def _list_resource_templates(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        _caller()
        found = self.gateway.catalogue.resource_templates()
        templates, after = page(found, params, self._page_size, "resource_templates")
        return types.ListResourceTemplatesResult(resource_templates=templates, next_cursor=after)

    async def _read_resource(
        self, ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        _caller()
        return await self.gateway.read_resource(str(params.uri))

    async def _list_prompts(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        _caller()
        found = self.gateway.catalogue.prompts()
        prompts, after = page(found, params, self._page_size, "prompts")
        return types.ListPromptsResult(prompts=prompts, next_cursor=after)

    async def _get_prompt(
        self, ctx: ServerRequestContext[Any], params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        _caller()
        return await self.gateway.get_prompt(params.name, params.arguments)

    async def _complete(
        self, ctx: ServerRequestContext[Any], params: types.CompleteRequestParams
    ) -> types.CompleteResult:
        _caller()
        return await self.gateway.complete(params)


class BearerGate:
    """ASGI wrapper that admits ``/mcp`` requests only with an active account key.

    The key itself is never passed on: upstream calls carry Tollgate's or the user's own
    credentials. Sessions are bound to the key's account, so another account cannot reuse
    a session id.
    """

    def __init__(
        self,
        app: ASGIApp,
        credentials: Credentials,
        keys: KeyStore,
        resource_metadata_url: Callable[[Scope], str],
    ):
        self.app = app
        self.credentials = credentials
        self.keys = keys
        self.resource_metadata_url = resource_metadata_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"].rstrip("/") != MCP_PATH:
            await not_found_response()(scope, receive, send)
            return
        token = _bearer(scope)
        if not token:
            await self._refuse(scope, receive, send, "invalid_request")
            return
        try:
            caller = await self._authenticate(token)
        except WrongKind as wrong:
            await self._refuse(scope, receive, send, "invalid_token", wrong.message)
            return
        except Unauthorized:
            await self._refuse(scope, receive, send, "invalid_token")
            return
        scope.setdefault("state", {})["caller"] = caller
        scope["user"] = AuthenticatedUser(
            AccessToken(
                token=f"account:{caller.account_id}", client_id=str(caller.account_id), scopes=[]
            )
        )
        reset = current_caller.set(caller)
        try:
            await self.app(scope, receive, send)
        finally:
            current_caller.reset(reset)

    async def _authenticate(self, token: str) -> AccountKeyCaller:
        """The account behind an active key; Unauthorized (WrongKind for an access token)."""
        identity = await self.credentials.authenticate_bearer(token, accept=ACCOUNT_KEY_ONLY)
        if not isinstance(identity, AccountKeyCaller):
            raise Unauthorized(KEY_REQUIRED, code="invalid_token")
        await self.keys.touch(identity.account_id)
        return identity

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        error: str,
        description: str = KEY_REQUIRED,
    ) -> None:
        response = bearer_refusal(error, description, self.resource_metadata_url(scope))
        await response(scope, receive, send)


def _progress_relay(
    ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
) -> ProgressFnT | None:
    """What sends the upstream's progress on to the caller, when the caller's request carried
    a progress token (else the upstream is not asked for progress either)."""
    if not (params.meta or {}).get("progress_token"):
        return None

    async def relay(progress: float, total: float | None, message: str | None) -> None:
        await ctx.session.report_progress(progress, total, message)

    return relay


def _bearer(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            header = str(value.decode("latin-1"))
            scheme, _, token = header.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return ""
