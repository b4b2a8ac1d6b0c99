"""The running application's shared components, built once per process."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tollgate.core.cache import Cache, make_cache
from tollgate.core.crypto import Keyring
from tollgate.core.database import SyncWrites, create_engine, create_session_factory
from tollgate.core.instances import new_instance_id
from tollgate.core.nearcache import NearCache
from tollgate.core.settings import Settings


@dataclass
class Runtime:
    """Settings, database, cache and keyring of one process."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    cache: Cache
    keyring: Keyring
    writes: SyncWrites
    near: NearCache
    """Copies of hot cache entries in this process (heard from once the app has started)."""
    instance_id: str = field(default_factory=new_instance_id)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        """Create the engine, cache and keyring that ``settings`` describe."""
        engine = create_engine(settings.resolved_database_url)
        cache = make_cache(settings.redis_url or None, settings.cache_prefix)
        return cls(
            settings=settings,
            engine=engine,
            sessions=create_session_factory(engine),
            cache=cache,
            keyring=Keyring.parse(settings.encryption_keys),
            writes=SyncWrites(engine),
            near=NearCache(cache),
        )

    async def close(self) -> None:
        """Release connections."""
        await self.near.stop()
        await self.cache.close()
        await self.writes.close()
        await self.engine.dispose()
