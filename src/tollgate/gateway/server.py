"""The ``/mcp`` endpoint: an MCP server (both protocol eras) in front of the gateway.

Requests are authenticated before they reach the MCP layer (:class:`BearerGate`); the
handlers read the caller from a context variable the gate sets. Catalogue changes reach
connected clients as ``notifications/*/list_changed`` on legacy sessions and as events on
2026-07-28 ``subscriptions/listen`` streams; so do the updates of the resources a client
subscribed to (``resources/subscribe``, or the resources named on its listen stream).
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
    ListenHandler,
    PromptsListChanged,
    ResourcesListChanged,
    ToolsListChanged,
)
from mcp.server.transport_security import (
    DEFAULT_MAX_REQUEST_BODY_SIZE,
    TransportSecuritySettings,
)
from mcp.shared.dispatcher import ProgressFnT
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from tollgate import __version__
from tollgate.accounts.keys import KeyStore
from tollgate.core.asgi import read_body, replayed
from tollgate.core.errors import (
    Unauthorized,
    bearer_refusal,
    error_response,
    not_found_response,
)
from tollgate.gateway import naming
from tollgate.gateway.addresses import public_base_url
from tollgate.gateway.callers import CallerReader
from tollgate.gateway.event_store import RETRY_INTERVAL_MS, store_per_session
from tollgate.gateway.forward import ForwardPath, wants_body
from tollgate.gateway.hub import Gateway
from tollgate.gateway.pages import page
from tollgate.gateway.relay import (
    CallerRequest,
    CallerSide,
    current_caller_request,
    set_caller_log_level,
)
from tollgate.gateway.servers import Memberships, server_of_path
from tollgate.gateway.views import View
from tollgate.gateway.watch import Delivery, PathBus, StreamUpdate
from tollgate.identity.credentials import (
    ACCOUNT_KEY_PREFIX,
    AccountKeyCaller,
    Credentials,
    WrongKind,
)
from tollgate.identity.oauth.service import ACCESS_TOKEN_PREFIX as OAUTH_TOKEN_PREFIX
from tollgate.identity.oauth.service import OAuthCaller

logger = logging.getLogger(__name__)

MCP_PATH = "/mcp"

PROTECTED_RESOURCE_ROOT = "/.well-known/oauth-protected-resource"
"""RFC 9728: a resource's metadata is at this root followed by the resource's path."""

KEY_REQUIRED = f"An active Tollgate account key ({ACCOUNT_KEY_PREFIX}...) is required"
"""Why ``/mcp`` refused a request (an access token is told so by name instead)."""

WRONG_RESOURCE = "This OAuth access token was issued for another resource"
"""Why ``/mcp`` refused an OAuth token whose audience (RFC 8707) is another path or host."""

current_caller: contextvars.ContextVar[AccountKeyCaller | None] = contextvars.ContextVar(
    "tollgate_mcp_caller", default=None
)
current_view: contextvars.ContextVar[View | None] = contextvars.ContextVar(
    "tollgate_mcp_view", default=None
)
"""What the request's path serves (a virtual server); None is ``/mcp`` itself."""

SERVER_FORBIDDEN = "This account may not use this virtual server"

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


def transport_security(allowed_hosts: list[str]) -> TransportSecuritySettings:
    """DNS-rebinding protection: the Host and Origin headers ``/mcp`` accepts."""
    origins = [f"http://{h}" for h in allowed_hosts] + [f"https://{h}" for h in allowed_hosts]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=allowed_hosts, allowed_origins=origins
    )


def _guarded(handler: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
    """Turn unexpected failures into a plain JSON-RPC internal error (never a leaked message)."""

    async def run(ctx: ServerRequestContext[Any], params: Any) -> R:
        # What an upstream sends during this request finds its way back through this.
        reset = current_caller_request.set(CallerRequest(ctx))
        try:
            return await handler(ctx, params)
        except MCPError:
            raise
        except Exception as exc:
            logger.exception("MCP handler %s failed", ctx.method)
            raise MCPError(types.INTERNAL_ERROR, "Internal error") from exc
        finally:
            current_caller_request.reset(reset)

    return run


class McpEndpoint:
    """The MCP server of one process, wired to its gateway."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.bus = PathBus(self._path)
        self.listen = ListenHandler(self.bus)
        self._legacy_connections: set[Connection] = set()
        self._page_size = gateway.runtime.settings.list_page_size
        self.callers: CallerReader | None = None
        """Told of every handshake-era session (the forward path serves their calls)."""
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
            on_subscriptions_listen=_guarded(self._listen),
            get_tool_input_schema=lambda name: self._view().input_schema(name),
        )
        self.server.add_request_handler(
            "logging/setLevel", types.SetLevelRequestParams, _guarded(self._set_log_level)
        )
        self.server.add_request_handler(
            "resources/subscribe", types.SubscribeRequestParams, _guarded(self._subscribe)
        )
        self.server.add_request_handler(
            "resources/unsubscribe", types.UnsubscribeRequestParams, _guarded(self._unsubscribe)
        )
        self.server.middleware.append(self._track_legacy_sessions)
        gateway.on_change(self.notify_changed)

    def asgi_app(self, allowed_hosts: list[str]) -> Starlette:
        """The SDK's Streamable HTTP app at ``/mcp`` (mount it at ``/``, after other routes);
        its handshake-era streams are resumable."""
        app = self.server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            transport_security=transport_security(allowed_hosts),
            retry_interval=RETRY_INTERVAL_MS,
        )
        store_per_session(self.server.session_manager)
        return app

    async def _track_legacy_sessions(
        self, ctx: ServerRequestContext[Any], call_next: CallNext
    ) -> HandlerResult:
        result = await call_next(ctx)
        connection: Connection = ctx.session._connection  # the SDK has no public accessor
        if self.callers is not None and ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            self.callers.register(connection)
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

    def _view(self) -> View:
        return current_view.get() or self.gateway.root

    def _path(self) -> str | None:
        """The virtual server the request came in on (None: ``/mcp``)."""
        spec = self._view().spec
        return spec.name if spec is not None else None

    async def _list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        result = await self.gateway.tools_for(_caller(), self._view())
        if len(result.tools) <= self._page_size and not (params and params.cursor):
            return result  # built once per change: the common case copies nothing
        tools, after = page(result.tools, params, self._page_size, "tools")
        return types.ListToolsResult(tools=tools, next_cursor=after)

    async def _call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        http = ctx.request
        request = CallerRequest(ctx)
        caller = _caller()
        name = self._view().tool_name(params.name)
        if name is None:
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
        side = CallerSide(
            protocol_version=ctx.protocol_version,
            session_id=http.headers.get("mcp-session-id") if http is not None else None,
            progress=_progress_relay(ctx, params),
            log_level=request.log_level(),
            same_era=request.can_be_asked(),
            relays_input=request.modern,
            input_responses=params.input_responses,
            request_state=params.request_state,
        )
        return await self.gateway.call_tool(caller, name, params.arguments, side)

    async def _set_log_level(
        self, ctx: ServerRequestContext[Any], params: types.SetLevelRequestParams
    ) -> types.EmptyResult:
        """Keep the caller's level, and have the upstreams it uses log at least that much."""
        _caller()
        set_caller_log_level(ctx, params.level)
        spec = self._view().spec
        await self.gateway.passthrough.set_log_level(
            spec.upstreams() if spec else None, params.level
        )
        return types.EmptyResult()

    def _served_uri(self, uri: str) -> str | None:
        """The gateway URI of a resource this path serves as ``uri`` (None: no such one)."""
        gateway_uri = self._view().resource_uri(uri)
        parts = naming.split_resource_uri(gateway_uri) if gateway_uri else None
        if gateway_uri is None or parts is None or not self.gateway.catalogue.is_visible(parts[0]):
            return None
        return gateway_uri

    def _watched_uri(self, uri: str) -> str:
        _caller()
        gateway_uri = self._served_uri(uri)
        if gateway_uri is None:
            raise MCPError(types.INVALID_PARAMS, f"Unknown resource: {uri}")
        return gateway_uri

    async def _subscribe(
        self, ctx: ServerRequestContext[Any], params: types.SubscribeRequestParams
    ) -> types.EmptyResult:
        """Send this session the resource's updates (its upstream is subscribed once)."""
        uri = str(params.uri)
        connection: Connection = ctx.session._connection  # the SDK has no public accessor
        await self.gateway.watch.subscribe_session(connection, self._watched_uri(uri), uri)
        return types.EmptyResult()

    async def _unsubscribe(
        self, ctx: ServerRequestContext[Any], params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        """Stop sending this session the resource's updates."""
        connection: Connection = ctx.session._connection
        await self.gateway.watch.unsubscribe(connection, [self._watched_uri(str(params.uri))])
        return types.EmptyResult()

    async def _listen(
        self, ctx: ServerRequestContext[Any], params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        """Serve a 2026-07-28 listen stream. The resources it names are subscribed to at
        their upstreams before it is acknowledged, and let go when it closes; a URI this
        path does not serve is acknowledged like any other and never updates."""
        _caller()
        wanted: dict[str, Delivery] = {}
        for uri in params.notifications.resource_subscriptions or ():
            gateway_uri = self._served_uri(uri)
            if gateway_uri is not None:
                wanted[gateway_uri] = StreamUpdate(self.bus, self._path(), uri)
        async with self.gateway.watch.listening(wanted):
            return await self.listen(ctx, params)

    async def _list_resources(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        _caller()
        found = self._view().resources()
        resources, after = page(found, params, self._page_size, "resources")
        return types.ListResourcesResult(resources=resources, next_cursor=after)

    async def _list_resource_templates(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        _caller()
        found = self._view().resource_templates()
        templates, after = page(found, params, self._page_size, "resource_templates")
        return types.ListResourceTemplatesResult(resource_templates=templates, next_cursor=after)

    async def _read_resource(
        self, ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        _caller()
        view = self._view()
        uri = view.resource_uri(str(params.uri))
        if uri is None:
            raise MCPError(types.INVALID_PARAMS, f"Unknown resource: {params.uri}")
        result = await self.gateway.passthrough.read_resource(uri)
        if view.spec is not None and not view.spec.prefixed:
            result.contents = [
                c.model_copy(update={"uri": view.shown_uri(str(c.uri))}) for c in result.contents
            ]
        return result

    async def _list_prompts(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        _caller()
        found = self._view().prompts()
        prompts, after = page(found, params, self._page_size, "prompts")
        return types.ListPromptsResult(prompts=prompts, next_cursor=after)

    async def _get_prompt(
        self, ctx: ServerRequestContext[Any], params: types.GetPromptRequestParams
    ) -> types.GetPromptResult | types.InputRequiredResult:
        _caller()
        name = self._view().prompt_name(params.name)
        if name is None:
            raise MCPError(types.INVALID_PARAMS, f"Unknown prompt: {params.name}")
        request = CallerRequest(ctx)
        side = CallerSide(
            relays_input=request.modern,
            input_responses=params.input_responses,
            request_state=params.request_state,
        )
        return await self.gateway.passthrough.get_prompt(_caller(), name, params.arguments, side)

    async def _complete(
        self, ctx: ServerRequestContext[Any], params: types.CompleteRequestParams
    ) -> types.CompleteResult:
        _caller()
        reference = self._view().reference(params.ref)
        if reference is None:
            raise MCPError(types.INVALID_PARAMS, "Unknown prompt or resource template")
        return await self.gateway.passthrough.complete(params.model_copy(update={"ref": reference}))


class BearerGate:
    """ASGI wrapper that admits ``/mcp`` and ``/servers/<name>/mcp`` requests only with an
    active account key (and, on a restricted virtual server, an admitted account).

    The key itself is never passed on: upstream calls carry Tollgate's or the user's own
    credentials. Sessions are bound to the key's account and to the path they were opened
    on, so neither another account nor another virtual server can reuse a session id.
    """

    def __init__(
        self,
        app: ASGIApp,
        credentials: Credentials,
        keys: KeyStore,
        resource_metadata_url: Callable[[Scope], str],
        gateway: Gateway,
        forward: ForwardPath | None = None,
    ):
        self.app = app
        self.credentials = credentials
        self.keys = keys
        self.resource_metadata_url = resource_metadata_url
        self.gateway = gateway
        self.forward = forward
        self.memberships = Memberships(gateway.runtime.sessions)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"].rstrip("/")
        server = server_of_path(path)
        view = self.gateway.view(server) if server is not None else None
        if view is None and path != MCP_PATH:
            await not_found_response()(scope, receive, send)
            return
        caller = await self._admit(scope, receive, send)
        if caller is None:
            return
        if view is not None and view.spec is not None:
            if not await self.memberships.admitted(view.spec, caller.user_id):
                await error_response(403, "server_forbidden", SERVER_FORBIDDEN)(
                    scope, receive, send
                )
                return
            # The SDK serves one path; the view tells the handlers what this one offers.
            scope = {**scope, "path": MCP_PATH, "raw_path": MCP_PATH.encode()}
        principal = f"{caller.account_id}@{server}" if server else str(caller.account_id)
        scope.setdefault("state", {})["caller"] = caller
        scope["user"] = AuthenticatedUser(
            AccessToken(token=f"account:{principal}", client_id=principal, scopes=[])
        )
        if self.forward is not None and self.forward.enabled and wants_body(scope):
            body = await read_body(receive, DEFAULT_MAX_REQUEST_BODY_SIZE)
            if body is None:
                await Response("Request body too large", 413)(scope, receive, send)
                return
            forwarded = await self.forward.serve(
                caller, view or self.gateway.root, scope, body, receive, send
            )
            if forwarded:
                return
            receive = replayed(body, receive)
        reset_caller = current_caller.set(caller)
        reset_view = current_view.set(view)
        try:
            await self.app(scope, receive, send)
        finally:
            current_view.reset(reset_view)
            current_caller.reset(reset_caller)

    async def _admit(self, scope: Scope, receive: Receive, send: Send) -> AccountKeyCaller | None:
        """The caller behind the request's key; None once a refusal was sent."""
        token = _bearer(scope)
        if not token:
            await self._refuse(scope, receive, send, "invalid_request")
            return None
        try:
            return await self._authenticate(token, scope)
        except WrongKind as wrong:
            await self._refuse(scope, receive, send, "invalid_token", wrong.message)
        except Unauthorized as refused:
            # An OAuth token is told why (expired, revoked, another resource).
            oauth = token.startswith(OAUTH_TOKEN_PREFIX)
            description = refused.message if oauth else KEY_REQUIRED
            await self._refuse(scope, receive, send, "invalid_token", description)
        return None

    async def _authenticate(self, token: str, scope: Scope) -> AccountKeyCaller:
        """The account behind an active key, or behind an OAuth access token issued for this
        very resource (RFC 8707); Unauthorized (WrongKind for a broker access token)."""
        identity = await self.credentials.authenticate_mcp(token)
        if isinstance(identity, OAuthCaller):
            identity = self._oauth_account(identity, scope)
        if not isinstance(identity, AccountKeyCaller):
            raise Unauthorized(KEY_REQUIRED, code="invalid_token")
        await self.keys.touch(identity.account_id)
        return identity

    def _oauth_account(self, caller: OAuthCaller, scope: Scope) -> AccountKeyCaller:
        """The account an OAuth token acts as, if the token's audience is the requested
        resource (``/mcp`` or this virtual server's path, under the public base URL)."""
        base = public_base_url(self.gateway.runtime.settings, scope)
        if caller.resource != base + scope["path"].rstrip("/"):
            raise Unauthorized(WRONG_RESOURCE, code="invalid_token")
        return AccountKeyCaller(caller.account_id, caller.user_id, caller.email)

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
