"""Account keys: generation, and lookup by hash through the cache."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tollgate.accounts.models import McpAccount
from tollgate.core.cache import Cache
from tollgate.core.crypto import hash_token, new_token
from tollgate.core.database import utcnow
from tollgate.core.errors import Unauthorized
from tollgate.core.runtime import Runtime
from tollgate.identity.models import User

KEY_PREFIX = "mcp_"
KEY_RANDOM_CHARS = 32
"""``mcp_`` + 32 URL-safe characters: about 190 bits of randomness."""

KEY_VISIBLE_PREFIX = 12
"""How much of a key is kept in clear to let people tell their keys apart."""

TOMBSTONE_TTL_FACTOR = 3
"""A replaced key's tombstone outlives any cache entry another process may still write."""

CONNECTED_TOUCH_SECONDS = 60
"""``last_connected_at`` is written at most this often per account, not on every call."""


@dataclass(frozen=True)
class NewKey:
    """A freshly generated key: the full value is shown once, only hash and prefix are kept."""

    full: str
    hash: str
    prefix: str


@dataclass(frozen=True)
class KeyIdentity:
    """Who an account key belongs to."""

    account_id: int
    user_id: int
    email: str


def generate_key() -> NewKey:
    """A new account key."""
    full = new_token(KEY_PREFIX, KEY_RANDOM_CHARS)
    return NewKey(full=full, hash=hash_token(full), prefix=full[:KEY_VISIBLE_PREFIX])


def looks_like_key(token: str) -> bool:
    """True when ``token`` has the shape of an account key (not a JWT)."""
    return token.startswith(KEY_PREFIX)


def _cache_key(key_hash: str) -> str:
    return f"mcpkey:{key_hash}"


class KeyStore:
    """Resolves account keys, caching hits and honouring invalidations from every process."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], cache: Cache, ttl: float
    ) -> None:
        self.sessions = sessions
        self.cache = cache
        self.ttl = ttl

    async def authenticate(self, key: str, *, use_cache: bool = True) -> KeyIdentity:
        """The identity behind an active key, or Unauthorized."""
        key_hash = hash_token(key)
        if use_cache:
            cached = await self.cache.get(_cache_key(key_hash))
            if cached is not None:
                return _from_cache(cached)
        identity = await self._lookup(key_hash)
        if identity is None:
            raise Unauthorized("Invalid MCP key", code="invalid_key")
        if use_cache:
            payload = json.dumps(
                {"a": identity.account_id, "u": identity.user_id, "e": identity.email}
            )
            await self.cache.add(_cache_key(key_hash), payload, self.ttl)
        return identity

    async def identify(self, token: str | None) -> KeyIdentity | None:
        """The identity behind ``token`` if it is an active account key, else None."""
        if not token or not looks_like_key(token):
            return None
        try:
            return await self.authenticate(token)
        except Unauthorized:
            return None

    async def _lookup(self, key_hash: str) -> KeyIdentity | None:
        query = (
            select(McpAccount.id, McpAccount.user_id, McpAccount.user_email)
            .join(User, User.id == McpAccount.user_id)
            .where(
                McpAccount.mcp_key_hash == key_hash,
                McpAccount.is_active.is_(True),
                User.is_active.is_(True),
            )
        )
        async with self.sessions() as session:
            row = (await session.execute(query)).first()
        return KeyIdentity(row.id, row.user_id, row.user_email) if row else None

    async def revoke(self, key_hash: str) -> None:
        """Make every process refuse ``key_hash`` now, whatever its cache holds."""
        await self.cache.set(
            _cache_key(key_hash), json.dumps({"revoked": True}), self.ttl * TOMBSTONE_TTL_FACTOR
        )

    async def forget(self, key_hash: str) -> None:
        """Drop what the cache holds for ``key_hash`` so the next use reads the database."""
        await self.cache.delete(_cache_key(key_hash))

    async def touch(self, account_id: int) -> None:
        """Record that the account connected, at most once a minute."""
        if not await self.cache.add(f"connected:{account_id}", "1", CONNECTED_TOUCH_SECONDS):
            return
        async with self.sessions() as session:
            await session.execute(
                update(McpAccount)
                .where(McpAccount.id == account_id)
                .values(last_connected_at=utcnow())
            )
            await session.commit()


def _from_cache(cached: str) -> KeyIdentity:
    data = json.loads(cached)
    if data.get("revoked"):
        raise Unauthorized("Invalid MCP key", code="invalid_key")
    return KeyIdentity(account_id=data["a"], user_id=data["u"], email=data["e"])


def key_store(runtime: Runtime) -> KeyStore:
    """A key store over the runtime's database and cache (it keeps no state of its own)."""
    return KeyStore(runtime.sessions, runtime.cache, runtime.settings.key_cache_ttl_seconds)
