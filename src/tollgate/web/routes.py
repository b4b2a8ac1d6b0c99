"""The pages: sign in, the user portal (account, key, credits, usage) and the admin console
(upstreams, the live dashboard). Each route states who may see it; forms carry a CSRF token."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from pydantic import ValidationError

from tollgate.accounts import service as accounts
from tollgate.accounts.deps import KeyStoreDep
from tollgate.analytics import service as analytics
from tollgate.analytics.live import TICKET_MINUTES, live_ticket
from tollgate.chat import llm_settings
from tollgate.chat.schemas import (
    ChatInput,
    ConnectInput,
    LLMInput,
    ModelCreate,
    ProviderCreate,
    ServerInput,
)
from tollgate.chat.service import ChatService
from tollgate.core.database import commit
from tollgate.core.deps import CacheDep, ClientAddress, RuntimeDep, SessionDep, SettingsDep
from tollgate.core.errors import BadRequest, TollgateError
from tollgate.core.state import component
from tollgate.gateway import server_admin
from tollgate.gateway.hub import Gateway
from tollgate.gateway.schemas import VirtualServerCreate
from tollgate.identity import service as identity
from tollgate.identity.models import User
from tollgate.identity.oauth.service import OAuthServer
from tollgate.web import (
    admin_routes,
    organization_routes,
    portal_routes,
    service,
    upstream_routes,
)
from tollgate.web.pages import GatewayDep, PageRoute, problem, render, require_permission
from tollgate.web.session import (
    PAGES_PATH,
    CsrfChecked,
    PageUser,
    check_csrf,
    sign_in,
    sign_out,
)

router = APIRouter(include_in_schema=False, route_class=PageRoute)
ChatDep = Annotated[ChatService, Depends(component(ChatService))]
OAuthDep = Annotated[OAuthServer, Depends(component(OAuthServer))]


@router.get("/")
async def home() -> RedirectResponse:
    """The portal. Public (it asks to sign in)."""
    return RedirectResponse(f"{PAGES_PATH}/", status_code=303)


@router.get(f"{PAGES_PATH}/login")
async def login_page(request: Request, next: str = f"{PAGES_PATH}/") -> HTMLResponse:
    """The sign-in form. Public."""
    return render(request, "login.html", None, next=_local(next))


@router.post(f"{PAGES_PATH}/login")
async def login(
    request: Request,
    _: CsrfChecked,
    session: SessionDep,
    settings: SettingsDep,
    cache: CacheDep,
    address: ClientAddress,
    username: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=500)] = f"{PAGES_PATH}/",
) -> Response:
    """Sign in with a username (or email) and password. Public."""
    throttle = identity.LoginThrottle(cache, settings)
    try:
        user = await identity.authenticate(session, throttle, username, password, address)
    except TollgateError as refused:
        return render(
            request, "login.html", None, 401, next=_local(next), error=refused.message,
            error_for="login",
        )  # fmt: skip
    response = RedirectResponse(_local(next), status_code=303)
    sign_in(response, settings, identity.issue_access_token(settings, user))
    return response


@router.post(f"{PAGES_PATH}/logout")
async def logout(_: CsrfChecked) -> Response:
    """End the session. Any signed-in browser."""
    response = RedirectResponse(f"{PAGES_PATH}/login", status_code=303)
    sign_out(response)
    return response


async def _portal(
    request: Request, user: User, session: SessionDep, oauth: OAuthServer, **extra: Any
) -> HTMLResponse:
    content = await service.portal(session, user.id)
    grants = await oauth.grants(session, user.id)
    status = 400 if extra.get("error") else 200
    return render(request, "portal.html", user, status, portal=content, grants=grants, **extra)


@router.get(f"{PAGES_PATH}/")
async def portal(
    request: Request, user: PageUser, session: SessionDep, oauth: OAuthDep
) -> HTMLResponse:
    """The user's MCP account, credits, ledger, usage and connected clients. Any signed-in
    user."""
    return await _portal(request, user, session, oauth)


@router.post(f"{PAGES_PATH}/oauth/grants/{{grant_id}}/revoke")
async def revoke_grant(
    grant_id: int,
    request: Request,
    user: PageUser,
    _: CsrfChecked,
    session: SessionDep,
    oauth: OAuthDep,
) -> HTMLResponse:
    """Disconnect one of the user's OAuth clients: its tokens stop at once. The grant's
    user."""
    await oauth.revoke_grant_of(session, grant_id, user.id)
    await commit(session)
    return await _portal(request, user, session, oauth, notice="The client was disconnected.")


@router.post(f"{PAGES_PATH}/account/enable")
async def enable_account(
    request: Request,
    user: PageUser,
    _: CsrfChecked,
    session: SessionDep,
    settings: SettingsDep,
    oauth: OAuthDep,
) -> HTMLResponse:
    """Open the user's MCP account; its key is shown this once. Any signed-in user."""
    enabled = await accounts.enable(session, user, settings)
    await commit(session)
    return await _portal(request, user, session, oauth, new_key=enabled.key.full)


@router.post(f"{PAGES_PATH}/account/regenerate")
async def regenerate_key(
    request: Request,
    user: PageUser,
    _: CsrfChecked,
    session: SessionDep,
    keys: KeyStoreDep,
    oauth: OAuthDep,
    confirm: Annotated[str, Form()] = "",
) -> HTMLResponse:
    """Replace the user's key (after confirmation); the new one is shown this once. Any
    signed-in user with an account."""
    if confirm != "yes":
        error = "Tick the confirmation: the current key stops working at once."
        return await _portal(request, user, session, oauth, error=error, error_for="regenerate")
    account = await accounts.account_for_user(session, user.id)
    key = await accounts.regenerate_key(session, account, keys)
    await commit(session)
    return await _portal(request, user, session, oauth, new_key=key.full)


@router.get(f"{PAGES_PATH}/admin/dashboard")
async def dashboard_page(request: Request, user: PageUser, session: SessionDep) -> HTMLResponse:
    """The live dashboard. Needs ``analytics.read``."""
    require_permission(user, "analytics.read")
    return render(request, "dashboard.html", user, board=await analytics.dashboard(session))


@router.get(f"{PAGES_PATH}/admin/dashboard/live")
async def dashboard_live(request: Request, user: PageUser, session: SessionDep) -> HTMLResponse:
    """The dashboard's figures, which the page reloads every two seconds. Needs
    ``analytics.read``."""
    require_permission(user, "analytics.read")
    return render(request, "dashboard_live.html", user, board=await analytics.dashboard(session))


@router.get(f"{PAGES_PATH}/admin/dashboard/live-ticket")
async def dashboard_ticket(user: PageUser, settings: SettingsDep) -> JSONResponse:
    """A one-minute ticket that opens the live feed's WebSocket and nothing else, for the
    dashboard's script (the session cookie stays out of its reach); never cached. Needs
    ``analytics.read``."""
    require_permission(user, "analytics.read")
    return JSONResponse(
        {"ticket": live_ticket(settings, user), "expires_in": TICKET_MINUTES * 60},
        headers={"Cache-Control": "no-store"},
    )


async def _chat_view(
    request: Request, user: User, chat: ChatService, gateway: Gateway, error: str | None = None
) -> HTMLResponse:
    models = (await chat.models())["models"]
    servers = [("/mcp", "All tools (/mcp)")] + [
        (f"/servers/{s.name}/mcp", s.title or s.name) for s in gateway.servers() if s.enabled
    ]
    config = await chat.store.config(str(user.id))
    status = 400 if error else 200
    return render(
        request, "chat.html", user, status, models=models, servers=servers, config=config,
        error=error, error_for="connect",
    )  # fmt: skip


@router.get(f"{PAGES_PATH}/chat")
async def chat_page(
    request: Request, user: PageUser, chat: ChatDep, gateway: GatewayDep
) -> HTMLResponse:
    """The chat playground: a model, a server, streamed answers with each tool call. Needs
    ``llm.invoke``."""
    require_permission(user, "llm.invoke")
    return await _chat_view(request, user, chat, gateway)


@router.post(f"{PAGES_PATH}/chat/connect")
async def chat_connect(
    request: Request,
    user: PageUser,
    _: CsrfChecked,
    chat: ChatDep,
    gateway: GatewayDep,
    model: Annotated[str, Form(max_length=200)] = "",
    server: Annotated[str, Form(max_length=2000)] = "/mcp",
) -> Response:
    """Start a chat session with the chosen model and server. Needs ``llm.invoke``."""
    require_permission(user, "llm.invoke")
    try:
        body = ConnectInput(llm=LLMInput(model=model), server=ServerInput(url=server))
        await chat.connect(user, body)
    except ValidationError:
        return await _chat_view(request, user, chat, gateway, "Pick a model")
    except TollgateError as refused:
        return await _chat_view(request, user, chat, gateway, refused.message)
    return RedirectResponse(f"{PAGES_PATH}/chat", status_code=303)


@router.post(f"{PAGES_PATH}/chat/send")
async def chat_send(request: Request, user: PageUser, chat: ChatDep) -> Response:
    """One message, its answer streamed as server-sent events (the page's script reads
    them). The CSRF token comes in ``X-CSRF-Token``. Needs ``llm.invoke``."""
    require_permission(user, "llm.invoke")
    check_csrf(request, request.headers.get("x-csrf-token", ""))
    try:
        body = ChatInput.model_validate(await request.json())
    except (ValueError, ValidationError) as exc:
        raise BadRequest('Send {"message": "..."}', code="invalid_message") from exc
    events = await chat.chat_stream(user, body.model_copy(update={"streaming": True}))
    return StreamingResponse(events, media_type="text/event-stream")


@router.get(f"{PAGES_PATH}/admin/servers")
async def servers_page(
    request: Request, user: PageUser, runtime: RuntimeDep, gateway: GatewayDep
) -> HTMLResponse:
    """The virtual servers. Needs ``servers.manage``."""
    require_permission(user, "servers.manage")
    found = await server_admin.describe_all(runtime, gateway)
    return render(request, "servers.html", user, servers=found)


@router.post(f"{PAGES_PATH}/admin/servers")
async def add_server(
    request: Request,
    user: PageUser,
    _: CsrfChecked,
    runtime: RuntimeDep,
    gateway: GatewayDep,
    name: Annotated[str, Form(max_length=32)] = "",
    tools: Annotated[str, Form(max_length=20000)] = "",
    prefixed: Annotated[str, Form()] = "",
) -> HTMLResponse:
    """Define a virtual server from tool patterns, one per line. Needs ``servers.manage``."""
    require_permission(user, "servers.manage")
    patterns = [line.strip() for line in tools.splitlines() if line.strip()]
    error: str | None = None
    try:
        body = VirtualServerCreate(name=name, tools=patterns, prefixed=prefixed == "yes")
        await server_admin.create(runtime, gateway, body)
    except (ValidationError, TollgateError) as refused:
        error = problem(refused)
    found = await server_admin.describe_all(runtime, gateway)
    status = 400 if error else 200
    return render(
        request, "servers.html", user, status, servers=found, error=error, error_for="add"
    )


@router.get(f"{PAGES_PATH}/admin/llm")
async def llm_page(request: Request, user: PageUser, session: SessionDep) -> HTMLResponse:
    """LLM providers and models. Needs ``llm.manage``."""
    require_permission(user, "llm.manage")
    return await _llm_view(request, user, session)


async def _llm_view(
    request: Request,
    user: User,
    session: SessionDep,
    error: str | None = None,
    error_for: str | None = None,
) -> HTMLResponse:
    providers = [llm_settings.provider_out(p) for p in await llm_settings.list_providers(session)]
    models = [llm_settings.model_out(m, p) for m, p in await llm_settings.list_models(session)]
    status = 400 if error else 200
    return render(
        request, "llm.html", user, status, providers=providers, models=models, error=error,
        error_for=error_for,
    )  # fmt: skip


@router.post(f"{PAGES_PATH}/admin/llm/providers")
async def add_provider(
    request: Request,
    user: PageUser,
    _: CsrfChecked,
    session: SessionDep,
    runtime: RuntimeDep,
    name: Annotated[str, Form(max_length=64)] = "",
    kind: Annotated[str, Form(max_length=16)] = "openai",
    base_url: Annotated[str, Form(max_length=2000)] = "",
    api_key: Annotated[str, Form(max_length=2000)] = "",
) -> HTMLResponse:
    """Add a provider (its API key is stored encrypted). Needs ``llm.manage``."""
    require_permission(user, "llm.manage")
    try:
        body = ProviderCreate.model_validate(
            {"name": name, "kind": kind, "base_url": base_url or None, "api_key": api_key or None}
        )
        await llm_settings.create_provider(session, runtime.keyring, body)
        await commit(session)
    except (ValidationError, TollgateError) as refused:
        return await _llm_view(request, user, session, problem(refused), "provider")
    return await _llm_view(request, user, session)


@router.post(f"{PAGES_PATH}/admin/llm/models")
async def add_model(
    request: Request,
    user: PageUser,
    _: CsrfChecked,
    session: SessionDep,
    provider: Annotated[str, Form(max_length=64)] = "",
    model_id: Annotated[str, Form(max_length=200)] = "",
    input_price: Annotated[str, Form(max_length=20)] = "0",
    output_price: Annotated[str, Form(max_length=20)] = "0",
) -> HTMLResponse:
    """Add a model of a provider, with its prices per million tokens. Needs ``llm.manage``."""
    require_permission(user, "llm.manage")
    try:
        body = ModelCreate.model_validate(
            {
                "provider": provider,
                "model_id": model_id,
                "input_price_per_million": input_price or "0",
                "output_price_per_million": output_price or "0",
            }
        )
        await llm_settings.create_model(session, body)
        await commit(session)
    except (ValidationError, TollgateError) as refused:
        return await _llm_view(request, user, session, problem(refused), "model")
    return await _llm_view(request, user, session)


def _local(target: str) -> str:
    """Only a path on this site may be where sign-in leads (never another site)."""
    return target if target.startswith("/") and not target.startswith("//") else f"{PAGES_PATH}/"


ROUTERS = (
    router,
    portal_routes.router,
    organization_routes.router,
    upstream_routes.router,
    admin_routes.router,
)
"""Every router of the pages (``create_app`` includes them)."""
