"""The authorization server's rules: which resources it issues tokens for, the pending
authorization a user signs in and consents to, codes, token issue and rotation, reuse
detection, revocation and the access tokens ``/mcp`` accepts.

The protocol itself (request parsing, PKCE S256, redirect checks, error shapes) is the ``mcp``
SDK's (``mcp.server.auth``); :class:`Provider` is what it calls. Access tokens are opaque
(``mcpat_...``), stored as SHA-256 hashes, bound to one resource (RFC 8707), short-lived, and
resolved through the cache like account keys (revocations are tombstones every process
honours).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    AuthorizeError,
    OAuthAuthorizationServerProvider,
    RefreshToken,
    RegistrationError,
    TokenError,
    construct_redirect_uri,
)
from mcp.shared.auth import OAuthClientInformationFull
from mcp.shared.auth import OAuthToken as TokenResponse
from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tollgate.core.crypto import constant_time_equal, hash_token, new_token
from tollgate.core.database import add_seconds, after_commit, transaction, utcnow
from tollgate.core.errors import Forbidden, NotFound, Unauthorized, Unprocessable
from tollgate.core.runtime import Runtime
from tollgate.identity.oauth.clients import (
    ClientRefused,
    KnownClient,
    MetadataDocuments,
    check_redirect_uris,
    looks_like_metadata_url,
    store_client,
    stored_client,
)
from tollgate.identity.oauth.models import (
    ClientKind,
    OAuthCode,
    OAuthGrant,
    OAuthToken,
    TokenKind,
)

ACCESS_TOKEN_PREFIX = "mcpat_"
"""What OAuth access tokens start with (never ``mcp_``: that is an account key)."""

REFRESH_TOKEN_PREFIX = "mcprt_"
"""What OAuth refresh tokens start with."""

CODE_PREFIX = "mcpac_"
"""What authorization codes start with."""

TOKEN_RANDOM_CHARS = 43
"""About 256 bits of randomness in every code and token."""

VISIBLE_PREFIX = 12
"""Characters of a token kept in clear, so people can tell tokens apart."""

CODE_SECONDS = 300
"""An authorization code is exchanged at once; RFC 6749 recommends at most ten minutes."""

REFRESH_TOKEN_SECONDS = 30 * 24 * 3600
"""A refresh token unused for thirty days lapses; the user then signs in again."""

PENDING_SECONDS = 600
"""How long a user has to sign in and consent once a client sent them to ``/authorize``."""

TOMBSTONE_TTL_FACTOR = 3
"""A revoked token's tombstone outlives any cache entry another process may still write."""

SERVER_PATH = re.compile(r"^/servers/[a-z][a-z0-9-]{0,31}/mcp$")
"""A virtual server's MCP path (gateway's ``/servers/<name>/mcp``)."""

MCP_PATH = "/mcp"
"""The gateway's own MCP endpoint."""

CONTINUE_PATH = "/oauth/continue"
"""Where ``/authorize`` sends the user: sign-in, then consent."""


@dataclass(frozen=True)
class AccountRef:
    """A user's enabled MCP account."""

    account_id: int
    user_id: int
    email: str


AccountLookup = Callable[[int], Awaitable[AccountRef | None]]
"""The enabled MCP account of an active user, by user id (the accounts part supplies it)."""


@dataclass(frozen=True)
class OAuthCaller:
    """An OAuth access token that passed every check, and the account it acts as."""

    account_id: int
    user_id: int
    email: str
    resource: str
    client_id: str


class NoAccount(Forbidden):
    """The signed-in user has no enabled MCP account to connect a client to."""

    def __init__(self) -> None:
        super().__init__(
            "Enable your MCP account before connecting a client", code="mcp_not_enabled"
        )


class Code(AuthorizationCode):
    """An authorization code with the grant it belongs to."""

    grant_id: int


class Refresh(RefreshToken):
    """A refresh token with its row and grant."""

    row_id: int
    grant_id: int


class Access(AccessToken):
    """An access token with its row and grant."""

    row_id: int
    grant_id: int


class PendingAuthorization(BaseModel):
    """A validated ``/authorize`` request waiting for the user's sign-in and consent."""

    request_id: str
    issuer: str
    client_id: str
    client_name: str
    redirect_uri: str
    redirect_uri_explicit: bool
    code_challenge: str
    state: str | None
    scopes: list[str]
    resource: str


def resource_problem(issuer: str, resource: str) -> str | None:
    """Why a token cannot be issued for ``resource`` at this issuer, or None."""
    if not resource.startswith(issuer + "/"):
        return f"Tollgate issues tokens for its own MCP endpoints ({issuer}/mcp) only"
    path = resource[len(issuer) :]
    if path == MCP_PATH or SERVER_PATH.match(path):
        return None
    return "the resource must be /mcp or a virtual server's /servers/<name>/mcp"


def _cache_entry(token_hash: str) -> str:
    return f"oauth-token:{token_hash}"


def _pending_entry(request_id: str) -> str:
    return f"oauth-pending:{request_id}"


class OAuthServer:
    """One process's authorization server (built by ``create_app``)."""

    def __init__(self, runtime: Runtime, accounts: AccountLookup) -> None:
        self.runtime = runtime
        self.accounts = accounts
        self.cache = runtime.cache
        self.ttl = runtime.settings.key_cache_ttl_seconds
        self.documents = MetadataDocuments(
            runtime.cache, allow_loopback=runtime.settings.oauth_client_metadata_allow_loopback
        )

    def provider(self, issuer: str) -> Provider:
        """What the SDK's handlers call, for requests addressed to ``issuer``."""
        return Provider(self, issuer)

    async def client(self, client_id: str) -> KnownClient | None:
        """A client by id: registered, or described by its metadata document URL
        (ClientRefused when that document cannot be used)."""
        if looks_like_metadata_url(client_id):
            return await self.documents.client(client_id)
        async with self.runtime.sessions() as session:
            return await stored_client(session, client_id)

    # Sign-in and consent

    async def pending(self, request_id: str) -> PendingAuthorization | None:
        """The pending authorization ``request_id`` names, while it lasts."""
        stored = await self.cache.get(_pending_entry(request_id))
        return PendingAuthorization.model_validate_json(stored) if stored else None

    async def account_of(self, user_id: int) -> AccountRef:
        """The user's enabled MCP account, or NoAccount."""
        account = await self.accounts(user_id)
        if account is None:
            raise NoAccount()
        return account

    async def approve(self, pending: PendingAuthorization, user_id: int) -> str:
        """Record the user's consent, issue a code; where to send the browser."""
        await self.account_of(user_id)
        if not await self._take_pending(pending.request_id):
            raise NotFound("This sign-in request has expired", code="request_expired")
        code = new_token(CODE_PREFIX, TOKEN_RANDOM_CHARS)
        async with transaction(self.runtime.sessions) as session:
            grant = OAuthGrant(
                user_id=user_id,
                client_id=pending.client_id,
                client_name=pending.client_name,
                resource=pending.resource,
                scopes=pending.scopes,
            )
            session.add(grant)
            await session.flush()
            session.add(
                OAuthCode(
                    code_hash=hash_token(code),
                    grant_id=grant.id,
                    redirect_uri=pending.redirect_uri,
                    redirect_uri_explicit=pending.redirect_uri_explicit,
                    code_challenge=pending.code_challenge,
                    expires_at=add_seconds(utcnow(), CODE_SECONDS),
                )
            )
        return construct_redirect_uri(
            pending.redirect_uri, code=code, state=pending.state, iss=pending.issuer
        )

    async def deny(self, pending: PendingAuthorization) -> str:
        """The user said no: where to send the browser (RFC 6749 ``access_denied``)."""
        await self._take_pending(pending.request_id)
        return construct_redirect_uri(
            pending.redirect_uri,
            error="access_denied",
            error_description="The user declined",
            state=pending.state,
            iss=pending.issuer,
        )

    async def _take_pending(self, request_id: str) -> bool:
        """Use a pending authorization once (a second consent with it is refused)."""
        return await self.cache.add(f"oauth-pending-used:{request_id}", "1", PENDING_SECONDS)

    # Access tokens on /mcp

    async def authenticate(self, raw: str) -> OAuthCaller:
        """The account an access token acts as, and its resource; Unauthorized otherwise."""
        token_hash = hash_token(raw)
        cached = await self.cache.get(_cache_entry(token_hash))
        if cached is not None:
            data = json.loads(cached)
            if data.get("revoked"):
                raise Unauthorized("This access token was revoked", code="invalid_token")
            return OAuthCaller(data["a"], data["u"], data["e"], data["r"], data["c"])
        caller, seconds_left = await self._look_up(token_hash)
        payload = {
            "a": caller.account_id,
            "u": caller.user_id,
            "e": caller.email,
            "r": caller.resource,
            "c": caller.client_id,
        }
        await self.cache.add(
            _cache_entry(token_hash), json.dumps(payload), min(self.ttl, seconds_left)
        )
        return caller

    async def _look_up(self, token_hash: str) -> tuple[OAuthCaller, float]:
        query = (
            select(OAuthToken.expires_at, utcnow(), OAuthGrant.user_id, OAuthGrant)
            .join(OAuthGrant, OAuthGrant.id == OAuthToken.grant_id)
            .where(
                OAuthToken.token_hash == token_hash,
                OAuthToken.kind == TokenKind.ACCESS,
                OAuthToken.revoked_at.is_(None),
                OAuthGrant.revoked_at.is_(None),
            )
        )
        async with self.runtime.sessions() as session:
            row = (await session.execute(query)).first()
        if row is None:
            raise Unauthorized("Unknown or revoked access token", code="invalid_token")
        expires_at, now, user_id, grant = row
        seconds_left = (expires_at - now).total_seconds()
        if seconds_left <= 0:
            raise Unauthorized("This access token has expired", code="invalid_token")
        account = await self.accounts(user_id)
        if account is None:
            raise Unauthorized("The account of this token is not enabled", code="invalid_token")
        caller = OAuthCaller(
            account.account_id, user_id, account.email, grant.resource, grant.client_id
        )
        return caller, seconds_left

    # Grants: the clients a user connected

    async def grants(self, session: AsyncSession, user_id: int | None) -> list[OAuthGrant]:
        """Live grants of one user (None: of everyone), newest first."""
        query = select(OAuthGrant).where(OAuthGrant.revoked_at.is_(None))
        if user_id is not None:
            query = query.where(OAuthGrant.user_id == user_id)
        return list((await session.scalars(query.order_by(OAuthGrant.id.desc()))).all())

    async def revoke_grant_of(
        self, session: AsyncSession, grant_id: int, user_id: int | None
    ) -> None:
        """Revoke a grant of ``user_id`` (None: anyone's); NotFound otherwise."""
        grant = await session.get(OAuthGrant, grant_id)
        if grant is None or grant.revoked_at is not None or user_id not in (None, grant.user_id):
            raise NotFound("No such connected client", code="grant_not_found")
        await self.revoke_grant(session, grant_id, "revoked_by_user")

    async def revoke_grant(self, session: AsyncSession, grant_id: int, reason: str) -> None:
        """End a grant and every token of it, in every process once this commits."""
        await session.execute(
            update(OAuthGrant)
            .where(OAuthGrant.id == grant_id, OAuthGrant.revoked_at.is_(None))
            .values(revoked_at=utcnow(), revoked_reason=reason)
        )
        await self._revoke_tokens(session, OAuthToken.grant_id == grant_id)

    async def _revoke_tokens(self, session: AsyncSession, which: object) -> None:
        hashes = list(
            (
                await session.scalars(
                    select(OAuthToken.token_hash).where(
                        which,  # type: ignore[arg-type]
                        OAuthToken.kind == TokenKind.ACCESS,
                        OAuthToken.revoked_at.is_(None),
                    )
                )
            ).all()
        )
        await session.execute(
            update(OAuthToken)
            .where(which, OAuthToken.revoked_at.is_(None))  # type: ignore[arg-type]
            .values(revoked_at=utcnow())
        )

        async def tombstones() -> None:
            for token_hash in hashes:
                await self.cache.set(
                    _cache_entry(token_hash),
                    json.dumps({"revoked": True}),
                    self.ttl * TOMBSTONE_TTL_FACTOR,
                )

        after_commit(session, tombstones)

    async def revoke_access_token(self, session: AsyncSession, row_id: int) -> None:
        """End one access token (RFC 7009)."""
        await self._revoke_tokens(session, OAuthToken.id == row_id)

    async def register(
        self, info: OAuthClientInformationFull, *, kind: str, created_by: int | None = None
    ) -> None:
        """Keep a client after checking its redirect URIs (ClientRefused otherwise)."""
        check_redirect_uris([str(u) for u in info.redirect_uris or []], info.application_type)
        if info.token_endpoint_auth_method == "client_secret_basic":
            # The token endpoint reads client_id from the form: secrets go there too.
            info.token_endpoint_auth_method = "client_secret_post"
        async with transaction(self.runtime.sessions) as session:
            await store_client(session, info, kind=kind, created_by=created_by)


class Provider(OAuthAuthorizationServerProvider[Code, Refresh, Access]):
    """The SDK's provider interface over :class:`OAuthServer`, for one issuer."""

    def __init__(self, server: OAuthServer, issuer: str) -> None:
        self.server = server
        self.issuer = issuer
        self.sessions = server.runtime.sessions

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        """A client by id; None when unknown or its metadata document is unusable."""
        try:
            known = await self.server.client(client_id)
        except ClientRefused:
            return None
        return known.info if known else None

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        """RFC 7591 dynamic registration."""
        try:
            await self.server.register(client_info, kind=ClientKind.DYNAMIC)
        except ClientRefused as refused:
            raise RegistrationError("invalid_redirect_uri", refused.description) from None

    async def authorize(
        self, client: OAuthClientInformationFull, params: AuthorizationParams
    ) -> str:
        """Keep the validated request; send the user to sign in and consent."""
        resource = params.resource or f"{self.issuer}{MCP_PATH}"
        problem = resource_problem(self.issuer, resource)
        if problem is not None:
            raise AuthorizeError("invalid_target", problem)
        request_id = secrets.token_urlsafe(24)
        pending = PendingAuthorization(
            request_id=request_id,
            issuer=self.issuer,
            client_id=client.client_id,
            client_name=client.client_name or client.client_id,
            redirect_uri=str(params.redirect_uri),
            redirect_uri_explicit=params.redirect_uri_provided_explicitly,
            code_challenge=params.code_challenge,
            state=params.state,
            scopes=params.scopes or [],
            resource=resource,
        )
        await self.server.cache.set(
            _pending_entry(request_id), pending.model_dump_json(), PENDING_SECONDS
        )
        return construct_redirect_uri(f"{self.issuer}{CONTINUE_PATH}", request=request_id)

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> Code | None:
        """A live code of ``client``; a code used before revokes what it issued."""
        query = (
            select(OAuthCode, OAuthGrant, OAuthCode.expires_at > utcnow())
            .join(OAuthGrant, OAuthGrant.id == OAuthCode.grant_id)
            .where(OAuthCode.code_hash == hash_token(authorization_code))
        )
        async with transaction(self.sessions) as session:
            row = (await session.execute(query)).first()
            if row is None:
                return None
            code, grant, fresh = row
            if code.used_at is not None:
                await self.server.revoke_grant(session, grant.id, "code_reused")
                return None
            if not fresh or grant.revoked_at is not None or grant.client_id != client.client_id:
                return None
        return Code(
            code=authorization_code,
            scopes=grant.scopes,
            expires_at=time.time() + CODE_SECONDS,
            client_id=grant.client_id,
            code_challenge=code.code_challenge,
            redirect_uri=code.redirect_uri,
            redirect_uri_provided_explicitly=code.redirect_uri_explicit,
            resource=grant.resource,
            subject=str(grant.user_id),
            grant_id=grant.id,
        )

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: Code
    ) -> TokenResponse:
        """Use the code (once, whoever races for it) and issue the first tokens."""
        async with transaction(self.sessions) as session:
            used = await session.execute(
                update(OAuthCode)
                .where(
                    OAuthCode.code_hash == hash_token(authorization_code.code),
                    OAuthCode.used_at.is_(None),
                )
                .values(used_at=utcnow())
            )
            if used.rowcount != 1:  # type: ignore[attr-defined]
                raise TokenError("invalid_grant", "authorization code was already used")
            return await self._issue(
                session, authorization_code.grant_id, authorization_code.scopes
            )

    async def load_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: str
    ) -> Refresh | None:
        """A live refresh token of ``client``; one rotated before revokes its family."""
        query = (
            select(OAuthToken, OAuthGrant, OAuthToken.expires_at > utcnow())
            .join(OAuthGrant, OAuthGrant.id == OAuthToken.grant_id)
            .where(
                OAuthToken.token_hash == hash_token(refresh_token),
                OAuthToken.kind == TokenKind.REFRESH,
            )
        )
        async with transaction(self.sessions) as session:
            row = (await session.execute(query)).first()
            if row is None:
                return None
            token, grant, fresh = row
            if grant.client_id != client.client_id:
                return None
            if token.used_at is not None and grant.revoked_at is None:
                await self.server.revoke_grant(session, grant.id, "refresh_token_reused")
                return None
            if not fresh or token.revoked_at is not None or grant.revoked_at is not None:
                return None
        return Refresh(
            token=refresh_token,
            client_id=grant.client_id,
            scopes=grant.scopes,
            resource=grant.resource,
            subject=str(grant.user_id),
            row_id=token.id,
            grant_id=grant.id,
        )

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: Refresh, scopes: list[str]
    ) -> TokenResponse:
        """Rotate: the presented token is used up, a new pair is issued."""
        async with transaction(self.sessions) as session:
            used = await session.execute(
                update(OAuthToken)
                .where(
                    OAuthToken.id == refresh_token.row_id,
                    OAuthToken.used_at.is_(None),
                    OAuthToken.revoked_at.is_(None),
                )
                .values(used_at=utcnow())
            )
            if used.rowcount != 1:  # type: ignore[attr-defined]
                await self.server.revoke_grant(
                    session, refresh_token.grant_id, "refresh_token_reused"
                )
                raise TokenError("invalid_grant", "refresh token was already used")
            return await self._issue(session, refresh_token.grant_id, scopes)

    async def _issue(
        self, session: AsyncSession, grant_id: int, scopes: list[str]
    ) -> TokenResponse:
        access = new_token(ACCESS_TOKEN_PREFIX, TOKEN_RANDOM_CHARS)
        refresh = new_token(REFRESH_TOKEN_PREFIX, TOKEN_RANDOM_CHARS)
        lifetime = self.server.runtime.settings.oauth_access_token_seconds
        for value, kind, seconds in (
            (access, TokenKind.ACCESS, lifetime),
            (refresh, TokenKind.REFRESH, REFRESH_TOKEN_SECONDS),
        ):
            session.add(
                OAuthToken(
                    token_hash=hash_token(value),
                    token_prefix=value[:VISIBLE_PREFIX],
                    kind=kind,
                    grant_id=grant_id,
                    expires_at=add_seconds(utcnow(), seconds),
                )
            )
        await session.execute(
            update(OAuthGrant).where(OAuthGrant.id == grant_id).values(last_used_at=utcnow())
        )
        await session.flush()
        return TokenResponse(
            access_token=access,
            expires_in=lifetime,
            refresh_token=refresh,
            scope=" ".join(scopes) or None,
        )

    async def load_access_token(self, token: str) -> Access | None:
        """An access token by value (for revocation)."""
        query = (
            select(OAuthToken, OAuthGrant)
            .join(OAuthGrant, OAuthGrant.id == OAuthToken.grant_id)
            .where(
                OAuthToken.token_hash == hash_token(token),
                OAuthToken.kind == TokenKind.ACCESS,
            )
        )
        async with self.sessions() as session:
            row = (await session.execute(query)).first()
        if row is None:
            return None
        found, grant = row
        return Access(
            token=token,
            client_id=grant.client_id,
            scopes=grant.scopes,
            resource=grant.resource,
            row_id=found.id,
            grant_id=grant.id,
        )

    async def revoke_token(self, token: Access | Refresh) -> None:
        """RFC 7009: an access token alone; a refresh token with its whole grant."""
        async with transaction(self.sessions) as session:
            if isinstance(token, Access):
                await self.server.revoke_access_token(session, token.row_id)
            else:
                await self.server.revoke_grant(session, token.grant_id, "refresh_token_revoked")


def csrf_token(secret: str, *parts: str) -> str:
    """A form's anti-forgery token, bound to ``parts`` (the pending request, the session)."""
    message = "\x1f".join(("tollgate-oauth-csrf", *parts)).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def csrf_valid(secret: str, presented: str, *parts: str) -> bool:
    """Whether ``presented`` is the anti-forgery token of ``parts``."""
    return constant_time_equal(presented, csrf_token(secret, *parts))


async def create_client(
    server: OAuthServer,
    *,
    name: str,
    redirect_uris: list[str],
    confidential: bool,
    application_type: str,
    created_by: int,
) -> OAuthClientInformationFull:
    """An admin's pre-registered client; its secret (confidential clients) is shown once."""
    info = OAuthClientInformationFull(
        client_id=str(uuid.uuid4()),
        client_name=name,
        redirect_uris=redirect_uris,
        token_endpoint_auth_method="client_secret_post" if confidential else "none",
        client_secret=secrets.token_urlsafe(32) if confidential else None,
        client_id_issued_at=int(time.time()),
        client_secret_expires_at=0 if confidential else None,
        application_type=application_type,
    )
    try:
        await server.register(info, kind=ClientKind.PREREGISTERED, created_by=created_by)
    except ClientRefused as refused:
        raise Unprocessable(refused.description, code=refused.error) from None
    return info
