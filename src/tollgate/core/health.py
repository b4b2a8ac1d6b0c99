"""``/health``: is the database reachable, is the cache reachable, which version runs."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from tollgate import __version__
from tollgate.core.deps import RuntimeDep

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

CHECK_TIMEOUT_SECONDS = 2.0
"""A dependency that does not answer within this is reported down, not waited on."""


@router.get("/health")
async def health(runtime: RuntimeDep) -> JSONResponse:
    """Liveness and dependencies. Public."""
    database = await _check(_ping_database(runtime))
    cache = await _check(runtime.cache.ping())
    healthy = database and cache
    body: dict[str, Any] = {
        "status": "healthy" if healthy else "unhealthy",
        "version": __version__,
        "database": "ok" if database else "unreachable",
        "cache": "ok" if cache else "unreachable",
        "cache_backend": "redis" if runtime.settings.redis_url else "memory",
        "database_backend": runtime.engine.dialect.name,
    }
    return JSONResponse(body, status_code=200 if healthy else 503)


async def _ping_database(runtime: RuntimeDep) -> bool:
    async with runtime.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
    return True


async def _check(probe: Any) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            return bool(await probe)
    except Exception as exc:
        logger.warning("health check failed: %s", type(exc).__name__)
        return False
