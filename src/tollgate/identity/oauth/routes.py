"""The authorization server's HTTP side: metadata (RFC 8414 and the OpenID form), dynamic
registration (RFC 7591), ``/authorize`` with its sign-in and consent pages, ``/token``,
``/revoke``, and the API of connected clients and pre-registered clients.

``/authorize``, ``/token``, ``/register`` and ``/revoke`` are the ``mcp`` SDK's handlers
(parsing, PKCE S256, redirect URI checks, OAuth error shapes) over :class:`Provider`.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from mcp.server.auth.handlers.authorize import AuthorizationHandler
from mcp.server.auth.handlers.register import RegistrationHandler
from mcp.server.auth.handlers.revoke import RevocationHandler
from mcp.server.auth.handlers.token import TokenHandler
from mcp.server.auth.middleware.client_auth import AuthenticationError, ClientAuthenticator
from mcp.server.auth.settings import ClientRegistrationOptions
from mcp.shared.auth import OAuthClientInformationFull, OAuthMetadata

from tollgate.core.crypto import constant_time_equal, hash_token
from tollgate.core.deps import CacheDep, ClientAddress, PathId, SessionDep, SettingsDep
from tollgate.core.errors import TollgateError, Unauthorized
from tollgate.core.settings import Settings
from tollgate.core.state import component
from tollgate.core.urls import public_base_url
from tollgate.identity import service as users
from tollgate.identity.credentials import user_for_jwt
from tollgate.identity.deps import CurrentUser, require
from tollgate.identity.models import User
from tollgate.identity.oauth import pages
from tollgate.identity.oauth.clients import ClientRefused, looks_like_metadata_url
from tollgate.identity.oauth.schemas import ClientCreate, ClientOut, GrantOut
from tollgate.identity.oauth.service import (
    PENDING_SECONDS,
    NoAccount,
    OAuthServer,
    PendingAuthorization,
    create_client,
    csrf_token,
    csrf_valid,
)
from tollgate.identity.permissions import permissions_for

protocol_router = APIRouter(tags=["oauth"])
api_router = APIRouter(prefix="/api/v1/oauth", tags=["oauth"])

OAuthServerDep = Annotated[OAuthServer, Depends(component(OAuthServer))]
"""The process's authorization server, built by ``create_app``."""

ClientsAdmin = Annotated[User, Depends(require("oauth.manage"))]

SESSION_COOKIE = "tollgate_oauth_session"
"""The sign-in of the authorization pages (a user JWT, for ``/oauth`` only)."""

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
"""OAuth answers carrying codes, tokens or errors are never cached (RFC 6749 section 5.1)."""

FRAME_DENY = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}
"""The sign-in and consent pages are never framed (clickjacking)."""

AUTH_METHODS = ["none", "client_secret_post"]
"""How clients authenticate at ``/token`` and ``/revoke``: public clients (PKCE) or a secret."""


def issuer_of(settings: Settings, request: Request) -> str:
    """This authorization server's issuer: ``TOLLGATE_PUBLIC_URL``, else the allowed ``Host``
    the client addressed (never a forged one): the same base the resource metadata names."""
    return public_base_url(settings, request.scope)


def oauth_error(status: int, error: str, description: str) -> JSONResponse:
    """An OAuth error answer (RFC 6749 section 5.2)."""
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=NO_STORE
    )


class SecretAuthenticator(ClientAuthenticator):
    """Client authentication at ``/token`` and ``/revoke`` against the secret's hash (the
    SDK's own compares a stored plain secret, which Tollgate never keeps)."""

    def __init__(self, server: OAuthServer, issuer: str) -> None:
        super().__init__(server.provider(issuer))
        self.server = server

    async def authenticate_request(self, request: Request) -> OAuthClientInformationFull:
        """The client the request authenticates as; AuthenticationError otherwise."""
        form = await request.form()
        client_id = form.get("client_id")
        secret = form.get("client_secret")
        basic = _basic_credentials(request.headers.get("Authorization", ""))
        if basic is not None:
            client_id, secret = basic
        if not isinstance(client_id, str) or not client_id:
            raise AuthenticationError("Missing client_id")
        try:
            known = await self.server.client(client_id)
        except ClientRefused as refused:
            raise AuthenticationError(refused.description) from None
        if known is None:
            raise AuthenticationError("Unknown client_id")
        if known.secret_hash is not None:
            if not isinstance(secret, str) or not secret:
                raise AuthenticationError("Client secret is required")
            if not constant_time_equal(hash_token(secret), known.secret_hash):
                raise AuthenticationError("Invalid client_secret")
        return known.info


def _basic_credentials(header: str) -> tuple[str, str] | None:
    if not header.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:]).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (unquote(client_id), unquote(secret)) if sep else None


def server_metadata(issuer: str) -> dict[str, Any]:
    """RFC 8414 metadata of this authorization server."""
    metadata = OAuthMetadata.model_validate(
        {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/authorize",
            "token_endpoint": f"{issuer}/token",
            "registration_endpoint": f"{issuer}/register",
            "revocation_endpoint": f"{issuer}/revoke",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": AUTH_METHODS,
            "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
            "code_challenge_methods_supported": ["S256"],
            "client_id_metadata_document_supported": True,
            "authorization_response_iss_parameter_supported": True,
            "service_documentation": f"{issuer}/api/v1/docs",
        }
    )
    document = metadata.model_dump(mode="json", exclude_none=True)
    document["issuer"] = issuer  # exactly as clients compare it: no added slash
    return document


@protocol_router.get("/.well-known/oauth-authorization-server")
async def authorization_server_metadata(request: Request, settings: SettingsDep) -> JSONResponse:
    """RFC 8414 authorization server metadata. Public."""
    return JSONResponse(server_metadata(issuer_of(settings, request)))


@protocol_router.get("/.well-known/openid-configuration")
async def openid_configuration(request: Request, settings: SettingsDep) -> JSONResponse:
    """The same metadata at the OpenID Connect discovery path (clients try both). Public."""
    return JSONResponse(server_metadata(issuer_of(settings, request)))


@protocol_router.api_route("/authorize", methods=["GET", "POST"], include_in_schema=False)
async def authorize(request: Request, server: OAuthServerDep, settings: SettingsDep) -> Response:
    """Start an authorization (code flow, PKCE S256 only). Public: the user signs in next."""
    params = request.query_params if request.method == "GET" else await request.form()
    client_id = params.get("client_id")
    if isinstance(client_id, str) and looks_like_metadata_url(client_id):
        try:
            await server.client(client_id)
        except ClientRefused as refused:
            return oauth_error(400, refused.error, refused.description)
    handler = AuthorizationHandler(server.provider(issuer_of(settings, request)))
    return await handler.handle(request)


@protocol_router.post("/token", include_in_schema=False)
async def token(request: Request, server: OAuthServerDep, settings: SettingsDep) -> Response:
    """Exchange a code (with its PKCE verifier) or a refresh token for tokens. Public:
    the client authenticates itself (a secret, or none for public clients)."""
    issuer = issuer_of(settings, request)
    handler = TokenHandler(server.provider(issuer), SecretAuthenticator(server, issuer))
    response: Response = await handler.handle(request)
    return response


@protocol_router.post("/register", include_in_schema=False)
async def register(request: Request, server: OAuthServerDep, settings: SettingsDep) -> Response:
    """RFC 7591 dynamic client registration. Public."""
    options = ClientRegistrationOptions(enabled=True)
    return await RegistrationHandler(server.provider(issuer_of(settings, request)), options).handle(
        request
    )


@protocol_router.post("/revoke", include_in_schema=False)
async def revoke(request: Request, server: OAuthServerDep, settings: SettingsDep) -> Response:
    """RFC 7009 token revocation. Public: the client authenticates itself."""
    issuer = issuer_of(settings, request)
    handler = RevocationHandler(server.provider(issuer), SecretAuthenticator(server, issuer))
    return await handler.handle(request)


async def _signed_in(request: Request, session: SessionDep, settings: Settings) -> User | None:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    try:
        return await user_for_jwt(cookie, session, settings)
    except Unauthorized:
        return None


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers={**NO_STORE, **FRAME_DENY})


def _expired() -> HTMLResponse:
    message = "This sign-in request has expired or was used. Start again from your client."
    return _html(pages.message_page("Request expired", message), 400)


async def _consent(
    server: OAuthServer, settings: Settings, pending: PendingAuthorization, user: User, cookie: str
) -> HTMLResponse:
    try:
        account = await server.account_of(user.id)
    except NoAccount as refused:
        return _html(pages.message_page("No MCP account", refused.message), 403)
    body = pages.consent_page(
        client=pending.client_name,
        client_id=pending.client_id,
        account=account.email,
        resource=pending.resource,
        redirect_uri=pending.redirect_uri,
        request_id=pending.request_id,
        csrf=csrf_token(settings.secret_key, "consent", pending.request_id, hash_token(cookie)),
    )
    return _html(body)


@protocol_router.get("/oauth/continue", include_in_schema=False)
async def continue_authorization(
    request: Request,
    server: OAuthServerDep,
    settings: SettingsDep,
    session: SessionDep,
    request_id: Annotated[str, Query(alias="request", max_length=64)],
) -> Response:
    """The sign-in page, or the consent page once signed in. Public (it signs the user in)."""
    pending = await server.pending(request_id)
    if pending is None:
        return _expired()
    user = await _signed_in(request, session, settings)
    if user is None:
        csrf = csrf_token(settings.secret_key, "login", request_id)
        return _html(pages.login_page(pending.client_name, request_id, csrf))
    return await _consent(server, settings, pending, user, request.cookies[SESSION_COOKIE])


@protocol_router.post("/oauth/login", include_in_schema=False)
async def sign_in(
    server: OAuthServerDep,
    settings: SettingsDep,
    session: SessionDep,
    cache: CacheDep,
    address: ClientAddress,
    request_id: Annotated[str, Form(alias="request", max_length=64)],
    csrf: Annotated[str, Form(max_length=128)],
    username: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1024)],
) -> Response:
    """Check the user's password for a pending authorization. Public (throttled as login)."""
    pending = await server.pending(request_id)
    if pending is None:
        return _expired()
    login_csrf = csrf_token(settings.secret_key, "login", request_id)
    if not csrf_valid(settings.secret_key, csrf, "login", request_id):
        return _html(
            pages.login_page(pending.client_name, request_id, login_csrf, "Try again."), 400
        )
    throttle = users.LoginThrottle(cache, settings)
    try:
        user = await users.authenticate(session, throttle, username, password, address)
    except TollgateError as refused:
        page = pages.login_page(pending.client_name, request_id, login_csrf, refused.message)
        return _html(page, refused.status_code)
    response = RedirectResponse(f"/oauth/continue?request={request_id}", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        users.issue_access_token(settings, user),
        max_age=PENDING_SECONDS,
        path="/oauth",
        httponly=True,
        samesite="lax",
        secure=pending.issuer.startswith("https://"),
    )
    return response


@protocol_router.post("/oauth/consent", include_in_schema=False)
async def consent(
    request: Request,
    server: OAuthServerDep,
    settings: SettingsDep,
    session: SessionDep,
    request_id: Annotated[str, Form(alias="request", max_length=64)],
    csrf: Annotated[str, Form(max_length=128)],
    decision: Annotated[str, Form(pattern="^(allow|deny)$")],
) -> Response:
    """Allow or deny the client. The signed-in user of the sign-in page (its cookie and
    the form's anti-forgery token)."""
    pending = await server.pending(request_id)
    cookie = request.cookies.get(SESSION_COOKIE, "")
    user = await _signed_in(request, session, settings)
    if pending is None:
        return _expired()
    if user is None or not csrf_valid(
        settings.secret_key, csrf, "consent", request_id, hash_token(cookie)
    ):
        return _html(pages.message_page("Not signed in", "Sign in again from your client."), 403)
    try:
        if decision == "allow":
            target = await server.approve(pending, user.id)
        else:
            target = await server.deny(pending)
    except TollgateError as refused:
        return _html(pages.message_page("Cannot connect", refused.message), refused.status_code)
    return RedirectResponse(target, status_code=303, headers=NO_STORE)


def _sees_everyone(user: User) -> bool:
    return "oauth.manage" in permissions_for(user.role, user.is_superuser)


@api_router.get("/grants", response_model=list[GrantOut])
async def list_grants(
    user: CurrentUser,
    session: SessionDep,
    server: OAuthServerDep,
    everyone: Annotated[bool, Query(alias="all")] = False,
) -> list[GrantOut]:
    """The clients the signed-in user connected; with ``all=true`` everyone's (needs
    ``oauth.manage``). Any signed-in user."""
    if everyone:
        await require("oauth.manage")(user)
    grants = await server.grants(session, None if everyone else user.id)
    return [GrantOut.model_validate(g) for g in grants]


@api_router.delete("/grants/{grant_id}", status_code=204)
async def revoke_grant(
    grant_id: PathId, user: CurrentUser, session: SessionDep, server: OAuthServerDep
) -> Response:
    """Disconnect a client: its tokens stop working at once. The grant's user, or
    ``oauth.manage`` for anyone's."""
    await server.revoke_grant_of(session, grant_id, None if _sees_everyone(user) else user.id)
    return Response(status_code=204)


@api_router.post("/clients", response_model=ClientOut, status_code=201)
async def create_preregistered_client(
    body: ClientCreate, admin: ClientsAdmin, server: OAuthServerDep
) -> ClientOut:
    """Pre-register a client (its secret, if any, is in this answer only). Needs
    ``oauth.manage``."""
    info = await create_client(
        server,
        name=body.client_name,
        redirect_uris=body.redirect_uris,
        confidential=body.confidential,
        application_type=body.application_type,
        created_by=admin.id,
    )
    return ClientOut(
        client_id=info.client_id,
        client_name=info.client_name,
        redirect_uris=[str(u) for u in info.redirect_uris or []],
        token_endpoint_auth_method=info.token_endpoint_auth_method,
        client_secret=info.client_secret,
    )
