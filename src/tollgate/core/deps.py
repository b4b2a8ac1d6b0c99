"""FastAPI dependencies shared by every part: the runtime, a request-scoped session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from tollgate.core.cache import Cache
from tollgate.core.database import MAX_ID, commit
from tollgate.core.runtime import Runtime
from tollgate.core.settings import Settings
from tollgate.core.state import AppStateDep


def get_runtime(state: AppStateDep) -> Runtime:
    """The process's runtime, built by ``create_app``."""
    return state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_settings_dep(runtime: RuntimeDep) -> Settings:
    """The process's settings."""
    return runtime.settings


def get_cache(runtime: RuntimeDep) -> Cache:
    """The process's cache."""
    return runtime.cache


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
CacheDep = Annotated[Cache, Depends(get_cache)]


async def get_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    """The request's session: committed when the route returns, rolled back if it raises."""
    async with runtime.sessions() as session:
        try:
            yield session
            await commit(session)
        except BaseException:
            session.info.pop("after_commit", None)
            await session.rollback()
            raise


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


def client_address(request: Request) -> str:
    """The peer address of the request (proxies are not trusted by default)."""
    return request.client.host if request.client else "unknown"


ClientAddress = Annotated[str, Depends(client_address)]


PathId = Annotated[int, Path(ge=1, le=MAX_ID)]
"""An integer id in a path: bounded so a huge number is a 422, not a database error."""

MAX_OFFSET = 1_000_000
"""Deeper pages than this are refused: use filters instead of scanning that far."""

PageLimit = Annotated[int, Query(ge=1, le=500, description="Max results")]
PageOffset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Offset for pagination")]
