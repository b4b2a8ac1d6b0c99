"""Bearer credentials: which kind a bearer value is, and who it names.

Three kinds arrive in ``Authorization: Bearer``: a user's JWT; an account key (``mcp_...``,
seed 000's shape) for ``/mcp``, ``/mcp/ws`` and the account routes; and an access token
(``mcpt_...``) for MCP servers calling the broker or posting analytics. Keys and tokens are
kept as SHA-256 hashes and found by hash. Access tokens issued before ``mcpt_`` start with
``mcp_`` like keys: they keep working, told apart by which table holds their hash.

:func:`authenticate_bearer` is the one way in. Account keys are resolved through the cache
(hits cached, revocations written as tombstones every process honours); their rows belong
to the accounts part, which supplies the lookup (:class:`AccountKeys`) when the app is built.
Access tokens are checked against the database on every use, expiry by the database clock.
"""

from __future__ import annotations

import enum
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tollgate.core.cache import Cache
from tollgate.core.crypto import hash_token
from tollgate.core.database import after_commit, commit, utcnow
from tollgate.core.errors import Unauthorized
from tollgate.core.nearcache import NearCache
from tollgate.core.runtime import Runtime
from tollgate.core.settings import Settings
from tollgate.identity.jwt import decode_access_token
from tollgate.identity.models import AccessToken, User
from tollgate.identity.oauth.service import ACCESS_TOKEN_PREFIX as OAUTH_TOKEN_PREFIX
from tollgate.identity.oauth.service import OAuthCaller, OAuthServer
from tollgate.identity.service import user_for_claims

logger = logging.getLogger(__name__)

ACCOUNT_KEY_PREFIX = "mcp_"
"""What account keys start with: seed 000's ``generate_mcp_key`` fixes it."""

ACCESS_TOKEN_PREFIX = "mcpt_"
"""What access tokens start with, so that they cannot be mistaken for account keys."""

LEGACY_ACCESS_TOKEN_PREFIX = "mcp_"
"""What access tokens issued before ``mcpt_`` start with: still accepted, found by hash."""

VISIBLE_PREFIX = 12
"""Characters of a key or token kept in clear, so people (and audit rows) can tell them apart."""

TOMBSTONE_TTL_FACTOR = 3
"""A replaced key's tombstone outlives any cache entry another process may still write."""

TOKEN_USE_WRITE_INTERVAL_SECONDS = 60
"""``last_used_at`` is written at most once a minute per token, not on every request."""

UNAUTHENTICATED = "Unauthenticated."
"""Seed 001's text for a refused access token."""

INVALID_KEY = "Invalid MCP key"
"""Seed 000's text for a refused account key."""


class Kind(enum.StrEnum):
    """The kinds of bearer credential."""

    USER = "user"
    ACCOUNT_KEY = "account_key"
    ACCESS_TOKEN = "access_token"


KIND_NAMES = {
    Kind.USER: "a user's JWT",
    Kind.ACCOUNT_KEY: f"an account key ({ACCOUNT_KEY_PREFIX}...)",
    Kind.ACCESS_TOKEN: f"an access token ({ACCESS_TOKEN_PREFIX}...)",
}
"""How refusals name each kind."""

ACCOUNT_KEY_ONLY = frozenset({Kind.ACCOUNT_KEY})
ACCOUNT_KEY_OR_USER = frozenset({Kind.ACCOUNT_KEY, Kind.USER})
ACCESS_TOKEN_OR_USER = frozenset({Kind.ACCESS_TOKEN, Kind.USER})


@dataclass(frozen=True)
class UserCaller:
    """A user signed in with a JWT."""

    user: User


@dataclass(frozen=True)
class AccountKeyCaller:
    """Who an account key belongs to."""

    account_id: int
    user_id: int
    email: str


@dataclass(frozen=True)
class TokenCaller:
    """An access token that passed every check, and the user it acts for."""

    token: AccessToken
    user: User


Caller = UserCaller | AccountKeyCaller | TokenCaller


class TokenRefused(Unauthorized):
    """An access token that is not (or no longer) valid; ``reason`` goes to the audit row."""

    def __init__(self, reason: str, message: str = UNAUTHENTICATED) -> None:
        super().__init__(message, code="invalid_token")
        self.reason = reason


class WrongKind(Unauthorized):
    """A valid-looking credential of a kind the endpoint does not take; the message names
    both, so the caller knows which one to send."""

    def __init__(self, presented: Kind, accepted: Collection[Kind], code: str) -> None:
        wanted = " or ".join(KIND_NAMES[kind] for kind in Kind if kind in accepted)
        super().__init__(
            f"This is {KIND_NAMES[presented]}; this endpoint takes {wanted}", code=code
        )
        self.presented = presented


def refusal_code(accepted: Collection[Kind]) -> str:
    """The error code of a refusal where ``accepted`` is taken (seed 000: ``invalid_key``)."""
    if Kind.ACCOUNT_KEY in accepted and Kind.ACCESS_TOKEN not in accepted:
        return "invalid_key"
    return "invalid_token"


def looks_like_account_key(value: str) -> bool:
    """True when ``value`` has an account key's shape (or a pre-``mcpt_`` access token's)."""
    return value.startswith(ACCOUNT_KEY_PREFIX)


def _key_cache_entry(key_hash: str) -> str:
    return f"mcpkey:{key_hash}"


class AccountKeys(ABC):
    """Account keys resolved through the cache, honouring revocations from every process.

    A hit is cached for ``ttl``; :meth:`revoke` writes a tombstone that outlives any entry a
    slower process may still add, :meth:`forget` drops the entry so the next use reads the
    database. The accounts part supplies :meth:`lookup` (its table holds the hashes).
    """

    def __init__(self, cache: Cache, ttl: float, near: NearCache | None = None) -> None:
        self.cache = cache
        self.ttl = ttl
        self.near = near
        """Copies in this process's memory (no cache round trip on most requests)."""

    @abstractmethod
    async def lookup(self, key_hash: str) -> AccountKeyCaller | None:
        """The active account (of an active user) whose key hashes to ``key_hash``."""

    async def authenticate(self, key: str, *, use_cache: bool = True) -> AccountKeyCaller:
        """The identity behind an active key, or Unauthorized."""
        key_hash = hash_token(key)
        entry = _key_cache_entry(key_hash)
        if not use_cache:
            return await self._looked_up(key_hash)
        near, generation = self.near, self.near.generation() if self.near else 0
        if near is not None and (copy := near.get(entry)) is not None:
            return _key_from_cache(copy)
        cached = await self.cache.get(entry)
        if cached is None:
            identity = await self._looked_up(key_hash)
            cached = _key_for_cache(identity)
            if not await self.cache.add(entry, cached, self.ttl):
                return identity  # another process wrote it first (maybe a tombstone): not kept
        if near is not None:
            near.put(entry, cached, generation)
        return _key_from_cache(cached)

    async def _looked_up(self, key_hash: str) -> AccountKeyCaller:
        identity = await self.lookup(key_hash)
        if identity is None:
            raise Unauthorized(INVALID_KEY, code="invalid_key")
        return identity

    async def identify(self, token: str | None) -> AccountKeyCaller | None:
        """The identity behind ``token`` if it is an active account key, else None."""
        if not token or not looks_like_account_key(token):
            return None
        try:
            return await self.authenticate(token)
        except Unauthorized:
            return None

    async def revoke(self, key_hash: str) -> None:
        """Make every process refuse ``key_hash`` now, whatever its cache holds."""
        await self.cache.set(
            _key_cache_entry(key_hash),
            json.dumps({"revoked": True}),
            self.ttl * TOMBSTONE_TTL_FACTOR,
        )
        if self.near is not None:
            await self.near.changed(_key_cache_entry(key_hash))

    async def forget(self, key_hash: str) -> None:
        """Drop what the cache holds for ``key_hash`` so the next use reads the database."""
        await self.cache.delete(_key_cache_entry(key_hash))
        if self.near is not None:
            await self.near.changed(_key_cache_entry(key_hash))


def _key_for_cache(identity: AccountKeyCaller) -> str:
    return json.dumps({"a": identity.account_id, "u": identity.user_id, "e": identity.email})


def _key_from_cache(cached: str) -> AccountKeyCaller:
    data = json.loads(cached)
    if data.get("revoked"):
        raise Unauthorized(INVALID_KEY, code="invalid_key")
    return AccountKeyCaller(account_id=data["a"], user_id=data["u"], email=data["e"])


TokenRefusalHook = Callable[[str, str, str], Awaitable[None]]
"""Called with (the token's visible prefix, client address, reason) after a refusal, once the
request's transaction has ended (the broker writes the audit row)."""


async def user_for_jwt(token: str, session: AsyncSession, settings: Settings) -> User:
    """The active user named by the JWT ``token``, or Unauthorized.

    Authentication is its own unit of work: it commits (a user seen for the first time is
    created) so the request holds no transaction while its route decides what to do; on
    SQLite an open transaction would make any other writer in the process wait.
    """
    claims = decode_access_token(
        token,
        secret=settings.jwt_secret_key,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    user = await user_for_claims(session, claims)
    await commit(session)
    return user


async def verify_access_token(session: AsyncSession, raw: str) -> TokenCaller:
    """The valid token and active user behind ``raw``, or TokenRefused.

    Expiry is decided by the database clock, in the statement that reads the token.
    """
    still_valid = AccessToken.is_active.is_(True) & AccessToken.revoked_at.is_(None)
    not_expired = or_(AccessToken.expires_at.is_(None), AccessToken.expires_at > utcnow())
    row = (
        await session.execute(
            select(AccessToken, User, still_valid, not_expired)
            .join(User, User.id == AccessToken.user_id)
            .where(AccessToken.token_hash == hash_token(raw))
        )
    ).first()
    if row is None:
        raise TokenRefused("unknown_token")
    token, user, valid, fresh = row
    if not valid:
        raise TokenRefused("inactive_token")
    if not fresh:
        raise TokenRefused("expired_token")
    if not user.is_active:
        raise TokenRefused("inactive_user")
    return TokenCaller(token=token, user=user)


def track_token_use(session: AsyncSession, cache: Cache, token: AccessToken) -> None:
    """Write ``last_used_at`` after this request commits, at most once a minute per token."""

    async def _write() -> None:
        if not await cache.add(f"token-used:{token.id}", "1", TOKEN_USE_WRITE_INTERVAL_SECONDS):
            return
        try:
            await session.execute(
                update(AccessToken).where(AccessToken.id == token.id).values(last_used_at=utcnow())
            )
            await session.commit()
        except Exception:
            logger.exception("could not record the use of token %s", token.token_prefix)
            await session.rollback()

    after_commit(session, _write)


class Credentials:
    """One process's resolution of bearer values (built by ``create_app``)."""

    def __init__(
        self,
        runtime: Runtime,
        account_keys: AccountKeys,
        on_token_refused: TokenRefusalHook | None = None,
        oauth: OAuthServer | None = None,
    ) -> None:
        self.runtime = runtime
        self.account_keys = account_keys
        self.on_token_refused = on_token_refused
        self.oauth = oauth

    async def authenticate_bearer(
        self,
        value: str,
        *,
        accept: Collection[Kind],
        session: AsyncSession | None = None,
        address: str = "",
    ) -> Caller:
        """Who ``value`` names, if it is of a kind in ``accept``; Unauthorized otherwise.

        ``session`` (the request's) is needed when a JWT or an access token is accepted.
        A credential of another kind is refused with :class:`WrongKind`, naming both.
        """
        if value.startswith(ACCESS_TOKEN_PREFIX):
            if Kind.ACCESS_TOKEN not in accept:
                raise WrongKind(Kind.ACCESS_TOKEN, accept, refusal_code(accept))
            return await self._access_token(value, _needed(session), address, accept)
        if looks_like_account_key(value):
            if Kind.ACCOUNT_KEY in accept:
                return await self._account_key(value, accept)
            if Kind.ACCESS_TOKEN in accept:
                return await self._access_token(value, _needed(session), address, accept)
            raise Unauthorized("Invalid token", code=refusal_code(accept))
        if Kind.USER in accept:
            return UserCaller(await user_for_jwt(value, _needed(session), self.runtime.settings))
        raise Unauthorized(INVALID_KEY, code=refusal_code(accept))

    async def authenticate_mcp(self, value: str) -> AccountKeyCaller | OAuthCaller:
        """What ``/mcp`` takes: an account key, or an OAuth access token (``mcpat_...``)
        acting as its user's account; whether the token's audience is the requested resource
        is the endpoint's to check. Account keys take the same path as before: the prefix
        test is all an OAuth token adds to them."""
        if self.oauth is not None and value.startswith(OAUTH_TOKEN_PREFIX):
            return await self.oauth.authenticate(value)
        caller = await self.authenticate_bearer(value, accept=ACCOUNT_KEY_ONLY)
        if not isinstance(caller, AccountKeyCaller):  # not accepted: never resolved as one
            raise Unauthorized(INVALID_KEY, code="invalid_key")
        return caller

    async def _account_key(self, value: str, accept: Collection[Kind]) -> AccountKeyCaller:
        """An account key; an access token from before ``mcpt_`` is refused by name."""
        try:
            return await self.account_keys.authenticate(value)
        except Unauthorized:
            if await self._is_access_token(value):
                raise WrongKind(Kind.ACCESS_TOKEN, accept, refusal_code(accept)) from None
            raise

    async def _access_token(
        self, value: str, session: AsyncSession, address: str, accept: Collection[Kind]
    ) -> TokenCaller:
        """An access token, its use tracked; a refusal is reported after the request's
        transaction ends (on SQLite a second writer would otherwise wait for the first)."""
        try:
            caller = await verify_access_token(session, value)
        except TokenRefused as refused:
            await session.rollback()
            if self.on_token_refused is not None:
                await self.on_token_refused(value[:VISIBLE_PREFIX], address, refused.reason)
            if refused.reason == "unknown_token" and await self._is_account_key(value):
                raise WrongKind(Kind.ACCOUNT_KEY, accept, refusal_code(accept)) from None
            raise
        track_token_use(session, self.runtime.cache, caller.token)
        return caller

    async def _is_account_key(self, value: str) -> bool:
        return looks_like_account_key(value) and (
            await self.account_keys.identify(value) is not None
        )

    async def _is_access_token(self, value: str) -> bool:
        query = select(AccessToken.id).where(AccessToken.token_hash == hash_token(value))
        async with self.runtime.sessions() as session:
            return (await session.execute(query)).first() is not None


def _needed(session: AsyncSession | None) -> AsyncSession:
    if session is None:
        raise ValueError("JWTs and access tokens are checked in the request's session")
    return session


async def authenticate_bearer(
    credentials: Credentials,
    value: str,
    *,
    accept: Collection[Kind],
    session: AsyncSession | None = None,
    address: str = "",
) -> Caller:
    """Who the bearer ``value`` names, if it is of a kind in ``accept``; Unauthorized
    otherwise (see :meth:`Credentials.authenticate_bearer`)."""
    return await credentials.authenticate_bearer(
        value, accept=accept, session=session, address=address
    )


async def user_or_token(
    credentials: Credentials, value: str, *, session: AsyncSession, address: str = ""
) -> UserCaller | TokenCaller:
    """:func:`authenticate_bearer` for the endpoints that take a JWT or an access token."""
    caller = await authenticate_bearer(
        credentials, value, accept=ACCESS_TOKEN_OR_USER, session=session, address=address
    )
    if isinstance(caller, AccountKeyCaller):  # not accepted: never resolved as one
        raise WrongKind(Kind.ACCOUNT_KEY, ACCESS_TOKEN_OR_USER, "invalid_token")
    return caller
