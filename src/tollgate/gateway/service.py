"""Upstream registrations: create, change, remove, and what the pool needs to connect."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tollgate.core.crypto import MASK, Keyring
from tollgate.core.database import database_now, utcnow
from tollgate.core.encrypted import associated_data
from tollgate.core.errors import Conflict, NotFound
from tollgate.gateway.catalogue import UpstreamListing, UpstreamPolicy
from tollgate.gateway.connections import ConnectionSpec
from tollgate.gateway.models import AuthMode, Upstream, UpstreamState
from tollgate.gateway.schemas import UpstreamCreate, UpstreamUpdate


def _seal(keyring: Keyring, upstream: Upstream, column: str, values: dict[str, str]) -> str | None:
    if not values:
        return None
    return keyring.encrypt_text(
        json.dumps(values, sort_keys=True), associated_data("upstreams", column, upstream.id)
    )


def _unseal(keyring: Keyring, upstream: Upstream, column: str) -> dict[str, str]:
    envelope = getattr(upstream, column)
    if not envelope:
        return {}
    data = json.loads(
        keyring.decrypt_text(envelope, associated_data("upstreams", column, upstream.id))
    )
    return {str(k): str(v) for k, v in data.items()}


async def create(session: AsyncSession, keyring: Keyring, body: UpstreamCreate) -> Upstream:
    """Register an upstream; its name must be new."""
    upstream = Upstream(
        name=body.name,
        transport=body.transport,
        url=body.url,
        command=body.command,
        args=list(body.args),
        auth_mode=body.auth,
        broker_service=body.broker_service,
        broker_header=body.broker_header,
        price=body.price,
        tool_prices=dict(body.tool_prices),
        tools_allowed=list(body.tools_allowed),
        tools_denied=list(body.tools_denied),
        timeout_seconds=body.timeout_seconds,
        enabled=body.enabled,
        state=UpstreamState.UNKNOWN,
        catalogue={},
    )
    session.add(upstream)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"An upstream named {body.name} exists", code="upstream_exists") from exc
    upstream.headers_envelope = _seal(keyring, upstream, "headers_envelope", dict(body.headers))
    upstream.env_envelope = _seal(keyring, upstream, "env_envelope", dict(body.env))
    await session.flush()
    return upstream


async def get(session: AsyncSession, name: str) -> Upstream:
    """The upstream called ``name``, or NotFound."""
    found = (
        await session.execute(select(Upstream).where(Upstream.name == name))
    ).scalar_one_or_none()
    if found is None:
        raise NotFound(f"No upstream named {name}", code="upstream_not_found")
    return found


async def list_all(session: AsyncSession) -> Sequence[Upstream]:
    """Every upstream, by name."""
    return (await session.execute(select(Upstream).order_by(Upstream.name))).scalars().all()


async def update(
    session: AsyncSession, keyring: Keyring, upstream: Upstream, body: UpstreamUpdate
) -> Upstream:
    """Apply the given changes."""
    changes = body.model_dump(exclude_unset=True)
    if "headers" in changes:
        upstream.headers_envelope = _seal(
            keyring, upstream, "headers_envelope", changes.pop("headers") or {}
        )
    if "env" in changes:
        upstream.env_envelope = _seal(keyring, upstream, "env_envelope", changes.pop("env") or {})
    for field, value in changes.items():
        if value is not None:
            setattr(upstream, field, value)
    upstream.updated_at = await database_now(session)
    await session.flush()
    return upstream


async def delete(session: AsyncSession, upstream: Upstream) -> None:
    """Remove an upstream."""
    await session.delete(upstream)
    await session.flush()


def connection_spec(keyring: Keyring, upstream: Upstream) -> ConnectionSpec:
    """How the pool reaches ``upstream`` with Tollgate's own credentials (or none)."""
    headers = (
        _unseal(keyring, upstream, "headers_envelope")
        if upstream.auth_mode == AuthMode.STATIC
        else {}
    )
    return ConnectionSpec(
        name=upstream.name,
        transport=upstream.transport,
        url=upstream.url,
        command=upstream.command,
        args=tuple(upstream.args or ()),
        env=tuple(sorted(_unseal(keyring, upstream, "env_envelope").items())),
        headers=tuple(sorted(headers.items())),
        timeout=upstream.timeout_seconds,
    )


def policy(upstream: Upstream) -> UpstreamPolicy:
    """Prices and tool lists of ``upstream``."""
    return UpstreamPolicy(
        name=upstream.name,
        price=upstream.price,
        tool_prices=dict(upstream.tool_prices or {}),
        allowed=frozenset(upstream.tools_allowed or ()),
        denied=frozenset(upstream.tools_denied or ()),
        enabled=upstream.enabled,
    )


def masked_headers(keyring: Keyring, upstream: Upstream, column: str) -> dict[str, str]:
    """Header (or env) names with their values masked."""
    return dict.fromkeys(_unseal(keyring, upstream, column), MASK)


async def save_listing(session: AsyncSession, name: str, listing: UpstreamListing) -> None:
    """Keep what an upstream offers, so every process can serve it at once."""
    upstream = await get(session, name)
    upstream.catalogue = listing.to_json()
    upstream.catalogue_updated_at = await database_now(session)
    await session.flush()


async def save_state(
    session: AsyncSession, name: str, up: bool, error: str | None, era: str | None
) -> None:
    """Record whether an upstream answered, and when."""
    upstream = (
        await session.execute(select(Upstream).where(Upstream.name == name))
    ).scalar_one_or_none()
    if upstream is None:
        return
    upstream.state = UpstreamState.UP if up else UpstreamState.DOWN
    upstream.last_error = error
    if up:
        upstream.last_seen_at = utcnow()
        upstream.protocol_era = era
    await session.flush()
