"""Account keys: generation, the lookup of their rows, and the process's key store.

Resolving a key (through the cache, honouring revocations from every process) is identity's
(:class:`tollgate.identity.credentials.AccountKeys`); this part owns the rows it reads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tollgate.accounts.models import McpAccount
from tollgate.core.cache import Cache
from tollgate.core.crypto import hash_token, new_token
from tollgate.core.database import utcnow
from tollgate.core.nearcache import NearCache
from tollgate.core.runtime import Runtime
from tollgate.identity.credentials import (
    ACCOUNT_KEY_PREFIX,
    VISIBLE_PREFIX,
    AccountKeyCaller,
    AccountKeys,
)
from tollgate.identity.models import User
from tollgate.identity.oauth.service import AccountRef

KEY_RANDOM_CHARS = 32
"""``mcp_`` + 32 URL-safe characters: about 190 bits of randomness."""

CONNECTED_TOUCH_SECONDS = 60
"""``last_connected_at`` is written at most this often per account, not on every call."""

TOUCHED_MEMORY_LIMIT = 10_000
"""Past this many remembered accounts, the ones not seen within a minute are forgotten."""


@dataclass(frozen=True)
class NewKey:
    """A freshly generated key: the full value is shown once, only hash and prefix are kept."""

    full: str
    hash: str
    prefix: str


def generate_key() -> NewKey:
    """A new account key."""
    full = new_token(ACCOUNT_KEY_PREFIX, KEY_RANDOM_CHARS)
    return NewKey(full=full, hash=hash_token(full), prefix=full[:VISIBLE_PREFIX])


class KeyStore(AccountKeys):
    """Account keys resolved from ``mcp_accounts`` through the cache; records connections."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        cache: Cache,
        ttl: float,
        near: NearCache | None = None,
    ) -> None:
        super().__init__(cache, ttl, near)
        self.sessions = sessions
        self._touched_at: dict[int, float] = {}

    async def lookup(self, key_hash: str) -> AccountKeyCaller | None:
        """The active account of an active user whose key hashes to ``key_hash``."""
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
        return AccountKeyCaller(row.id, row.user_id, row.user_email) if row else None

    async def account_of_user(self, user_id: int) -> AccountRef | None:
        """The enabled account of an active user (what an OAuth access token acts as)."""
        query = (
            select(McpAccount.id, McpAccount.user_id, McpAccount.user_email)
            .join(User, User.id == McpAccount.user_id)
            .where(
                McpAccount.user_id == user_id,
                McpAccount.is_active.is_(True),
                User.is_active.is_(True),
            )
        )
        async with self.sessions() as session:
            row = (await session.execute(query)).first()
        return AccountRef(row.id, row.user_id, row.user_email) if row else None

    async def touch(self, account_id: int) -> None:
        """Record that the account connected, at most once a minute (across processes)."""
        now = time.monotonic()
        # Remembered here first, so most calls cost no cache round trip at all.
        if (
            now - self._touched_at.get(account_id, -CONNECTED_TOUCH_SECONDS)
            < CONNECTED_TOUCH_SECONDS
        ):
            return
        self._touched_at[account_id] = now
        if len(self._touched_at) > TOUCHED_MEMORY_LIMIT:
            self._forget_old_touches(now)
        if not await self.cache.add(f"connected:{account_id}", "1", CONNECTED_TOUCH_SECONDS):
            return
        async with self.sessions() as session:
            await session.execute(
                update(McpAccount)
                .where(McpAccount.id == account_id)
                .values(last_connected_at=utcnow())
            )
            await session.commit()

    def _forget_old_touches(self, now: float) -> None:
        cutoff = now - CONNECTED_TOUCH_SECONDS
        self._touched_at = {a: t for a, t in self._touched_at.items() if t >= cutoff}


def key_store(runtime: Runtime) -> KeyStore:
    """A key store over the runtime's database and cache (it keeps no state of its own)."""
    return KeyStore(
        runtime.sessions, runtime.cache, runtime.settings.key_cache_ttl_seconds, runtime.near
    )
