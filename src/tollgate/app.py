"""``create_app(settings)``: routers, lifespan, error handlers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from mcp.server.transport_security import TransportSecurityMiddleware
from starlette.types import Scope

from tollgate import __version__
from tollgate.accounts import billing_routes, jobs
from tollgate.accounts import routes as account_routes
from tollgate.accounts.deps import key_store
from tollgate.accounts.holds import CreditHolds
from tollgate.accounts.meter import CallMeter
from tollgate.accounts.settlement import Settler
from tollgate.analytics import jobs as analytics_jobs
from tollgate.analytics import routes as analytics_routes
from tollgate.analytics.recorder import Recorder
from tollgate.broker import jobs as broker_jobs
from tollgate.broker import organization_routes
from tollgate.broker import routes as broker_routes
from tollgate.broker.deps import audit_token_refusal
from tollgate.chat import routes as chat_routes
from tollgate.chat.loop import Limits
from tollgate.chat.service import ChatService
from tollgate.chat.store import SessionStore
from tollgate.chat_wiring import chat_tool_sources
from tollgate.core import health
from tollgate.core.bodylimit import BodySizeLimit
from tollgate.core.docs import install_docs
from tollgate.core.errors import COMMON_ERRORS, error_responses, install_error_handlers
from tollgate.core.instances import HEARTBEAT_INTERVAL_SECONDS, heartbeat
from tollgate.core.jobs import Scheduler
from tollgate.core.logging import configure_logging
from tollgate.core.runtime import Runtime
from tollgate.core.settings import Settings, get_settings
from tollgate.core.shortcut import PathShortcut
from tollgate.core.state import AppState, install_state
from tollgate.data import routes as data_routes
from tollgate.data.service import DataAccess
from tollgate.data.tools import UPSTREAM_NAME as DATA_UPSTREAM
from tollgate.data.tools import data_server
from tollgate.gateway import routes as gateway_routes
from tollgate.gateway.addresses import identity_extension, public_base_url
from tollgate.gateway.callers import CallerReader
from tollgate.gateway.forward import ForwardPath
from tollgate.gateway.hub import Gateway
from tollgate.gateway.server import (
    MCP_PATH,
    PROTECTED_RESOURCE_ROOT,
    BearerGate,
    McpEndpoint,
    transport_security,
)
from tollgate.gateway.servers import SERVERS_PATH_PREFIX, server_of_path
from tollgate.gateway.sessions import OWNER_REFRESH_SECONDS, InternalListener, SessionRouter
from tollgate.identity import routes as identity_routes
from tollgate.identity.credentials import Credentials
from tollgate.identity.oauth import routes as oauth_routes
from tollgate.identity.oauth.service import OAuthServer
from tollgate.web import routes as web_routes
from tollgate.web.session import SignInRequired, to_login
from tollgate.wiring import install_identity_hooks

logger = logging.getLogger(__name__)

MCP_PATHS = frozenset({"/mcp", "/mcp/"})

WEB_STATIC = Path(web_routes.__file__).parent / "static"

OPENAPI_PATH = "/api/v1/openapi.json"

ANALYTICS_RETENTION_INTERVAL_SECONDS = 3600.0
"""Raw analytics events past the retention are rolled up and pruned hourly."""

ABANDONED_CALLS_INTERVAL_SECONDS = 60.0
"""How often calls left pending by a dead process are looked for (besides at start)."""


def create_app(settings: Settings | None = None, *, configure_logs: bool = True) -> FastAPI:
    """The Tollgate ASGI application for ``settings`` (from the environment by default)."""
    settings = settings or get_settings()
    if configure_logs:
        configure_logging(settings.log_level, settings.log_json)
    runtime = Runtime.build(settings)
    oauth = OAuthServer(runtime, key_store(runtime).account_of_user)
    credentials = Credentials(runtime, key_store(runtime), audit_token_refusal(runtime), oauth)
    install_identity_hooks()
    settler = Settler(runtime.writes)
    holds = CreditHolds(
        runtime.sessions,
        runtime.cache,
        runtime.instance_id,
        block=settings.credit_block,
        hold_seconds=settings.credit_hold_seconds,
    )
    meter = CallMeter(holds, settler, wait_for_record=settings.settle_before_answer)
    gateway = Gateway(runtime, meter)
    endpoint = McpEndpoint(gateway)
    endpoint.server.extensions.update(identity_extension(settings))
    recorder = Recorder(runtime.writes, runtime.cache)
    gateway.observers.attach(recorder.observe)
    keys = key_store(runtime)
    data = (
        DataAccess(
            settings,
            credentials,
            meter,
            gateway.observers.emit,
        )
        if settings.mcp_enabled
        else None
    )
    components: list[object] = [settler, holds, meter, gateway, endpoint, recorder, keys]
    components.append(credentials)
    components.append(_chat_service(runtime, gateway, recorder))
    components.append(oauth)
    state = AppState(runtime, *components, *([data] if data is not None else []))
    mcp_app = endpoint.asgi_app(settings.allowed_hosts)
    forward = _forward_path(gateway, endpoint, settings)
    session_router = SessionRouter(
        BearerGate(
            mcp_app,
            credentials,
            keys,
            lambda scope: _resource_metadata_url(settings, scope),
            gateway,
            forward,
        ),
        endpoint.server.session_manager,
        runtime.cache,
        settings.secret_key,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        scheduler = Scheduler()
        runtime.near.start()
        await heartbeat(runtime.cache, runtime.instance_id)
        await jobs.recover_abandoned_work(runtime)
        _schedule_jobs(scheduler, runtime)
        try:
            async with gateway.pool, endpoint.server.session_manager.run():
                await forward.start()
                settler.start()
                holds.start()
                recorder.start()
                if data is not None:
                    gateway.add_builtin(
                        DATA_UPSTREAM, data_server(data.source), settings.data_tool_price
                    )
                await gateway.sync()
                scheduler.every(
                    settings.upstream_sync_interval_seconds, "upstream-sync", gateway.sync
                )
                listener = InternalListener(app, settings) if settings.redis_url else None
                if listener is not None:
                    await session_router.start(await listener.start())
                    scheduler.every(
                        OWNER_REFRESH_SECONDS, "mcp-session-owners", session_router.refresh
                    )
                try:
                    yield
                finally:
                    endpoint.listen.close()
                    await scheduler.stop()
                    await session_router.stop()
                    if listener is not None:
                        await listener.stop()
        finally:
            await scheduler.stop()
            await forward.close()
            await meter.drain()
            await settler.stop()
            await _quietly(holds.stop(), "giving back held credits")
            await gateway.limiter.close()
            await recorder.stop()
            if data is not None:
                await data.close()
            await runtime.close()

    app = FastAPI(
        title="Tollgate",
        version=__version__,
        description="Self-hosted MCP gateway and control plane.",
        docs_url=None,  # served from local assets: install_docs below
        redoc_url=None,
        openapi_url=OPENAPI_PATH,
        lifespan=lifespan,
        debug=False,
    )
    install_state(app, state)
    install_docs(app, OPENAPI_PATH)
    install_error_handlers(app)
    # /mcp skips the route table (it is matched last, after every API route); added first,
    # this sits inside the body limit.
    app.add_middleware(
        PathShortcut, paths=MCP_PATHS, target=session_router, prefix=SERVERS_PATH_PREFIX
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.include_router(health.router)
    app.include_router(identity_routes.auth_router, responses=error_responses(401, 422))
    for router in (
        identity_routes.users_router,
        identity_routes.orgs_router,
        account_routes.router,
        account_routes.admin_router,
        billing_routes.router,
        broker_routes.mcp_router,
        broker_routes.tokens_router,
        broker_routes.services_router,
        broker_routes.audit_router,
        organization_routes.integrations_router,
        organization_routes.organizations_router,
        organization_routes.invitations_router,
        gateway_routes.router,
        gateway_routes.servers_router,
        chat_routes.router,
        chat_routes.settings_router,
    ):
        app.include_router(router, responses=error_responses(*COMMON_ERRORS))
    app.include_router(gateway_routes.metadata_router)
    app.include_router(oauth_routes.protocol_router)
    app.include_router(oauth_routes.api_router, responses=error_responses(*COMMON_ERRORS))
    app.include_router(data_routes.router)
    _install_pages(app)
    for router in (analytics_routes.router, analytics_routes.metrics_router):
        app.include_router(router, responses=error_responses(*COMMON_ERRORS))
    app.mount("/", session_router)
    return app


def _chat_service(runtime: Runtime, gateway: Gateway, recorder: Recorder) -> ChatService:
    """The LLM chat, its tools through this process's gateway, its costs into analytics."""
    settings = runtime.settings
    store = SessionStore(
        runtime.cache,
        runtime.keyring,
        ttl=settings.chat_session_ttl_seconds,
        history_limit=settings.chat_history_messages,
    )
    return ChatService(
        runtime.sessions,
        runtime.keyring,
        store,
        chat_tool_sources(runtime, gateway),
        recorder.observe_model_call,
        Limits(settings.chat_max_steps, settings.chat_tool_result_chars),
    )


def _install_pages(app: FastAPI) -> None:
    """The portal and admin pages, their static files, and the sign-in redirect."""
    for router in web_routes.ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=WEB_STATIC), name="static")

    async def sign_in_first(request: Request, _: Exception) -> Response:
        return to_login(request)

    app.add_exception_handler(SignInRequired, sign_in_first)


async def _quietly(work: Awaitable[object], what: str) -> None:
    """Run shutdown work whose failure must not stop the rest of the shutdown."""
    try:
        await work
    except Exception:
        logger.exception("%s failed during shutdown", what)


def _schedule_jobs(scheduler: Scheduler, runtime: Runtime) -> None:
    settings = runtime.settings
    scheduler.every(
        HEARTBEAT_INTERVAL_SECONDS,
        "heartbeat",
        lambda: heartbeat(runtime.cache, runtime.instance_id),
    )
    scheduler.every(
        ABANDONED_CALLS_INTERVAL_SECONDS,
        "abandoned-calls",
        lambda: jobs.recover_abandoned_work(runtime),
    )
    scheduler.every(
        settings.refill_interval_seconds,
        "monthly-refill",
        lambda: jobs.run_monthly_refill(runtime.sessions),
    )
    scheduler.every(
        ANALYTICS_RETENTION_INTERVAL_SECONDS,
        "analytics-retention",
        lambda: analytics_jobs.roll_up_and_prune(
            runtime.sessions, settings.analytics_retention_days
        ),
    )
    scheduler.every(
        settings.lease_expiry_interval_seconds,
        "lease-expiry",
        lambda: broker_jobs.mark_expired_leases(runtime.sessions),
    )


def _forward_path(gateway: Gateway, endpoint: McpEndpoint, settings: Settings) -> ForwardPath:
    """The raw relay of tool calls (it serves none when the operator turned it off)."""
    security = TransportSecurityMiddleware(transport_security(settings.allowed_hosts))
    callers = CallerReader(endpoint.server.session_manager, security)
    if settings.forward_tool_calls:
        endpoint.callers = callers
    return ForwardPath(gateway, callers, enabled=settings.forward_tool_calls)


def _resource_metadata_url(settings: Settings, scope: Scope) -> str:
    """Where the protected-resource metadata of the requested MCP path (``/mcp`` or a
    virtual server's) is: under the public URL, or the base the client addressed when its
    ``Host`` is an allowed one (never a forged host)."""
    path = scope["path"].rstrip("/")
    suffix = path if server_of_path(path) else MCP_PATH
    return f"{public_base_url(settings, scope)}{PROTECTED_RESOURCE_ROOT}{suffix}"


def app_factory() -> FastAPI:
    """Entry point for ``uvicorn --factory`` (each worker builds its own app)."""
    return create_app()
