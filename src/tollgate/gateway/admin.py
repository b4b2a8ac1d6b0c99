"""Upstream administration as units of work: each commits before the gateway reconnects,
so the new session's own writes never wait on the request's transaction."""

from __future__ import annotations

import anyio

from tollgate.core.database import transaction
from tollgate.core.errors import ServiceUnavailable
from tollgate.core.runtime import Runtime
from tollgate.gateway import service
from tollgate.gateway.addresses import gateway_id
from tollgate.gateway.catalogue import UpstreamListing
from tollgate.gateway.connections import UpstreamConnection, describe_failure
from tollgate.gateway.guards import (
    STDIO_FIELDS,
    UpstreamIsSelf,
    check_stdio_allowed,
    check_upstream_url,
)
from tollgate.gateway.hub import Gateway
from tollgate.gateway.models import Upstream
from tollgate.gateway.schemas import ToolSummary, UpstreamCreate, UpstreamOut, UpstreamUpdate
from tollgate.identity.models import User

FIRST_CONTACT_SECONDS = 15.0
"""How long adding an upstream waits for it to answer before replying without its tools."""


def _out(runtime: Runtime, gateway: Gateway, upstream: Upstream) -> UpstreamOut:
    listing = gateway.catalogue.listing(upstream.name)
    if not listing.tools and upstream.catalogue:
        listing = UpstreamListing.from_json(upstream.catalogue)
    policy = service.policy(upstream)
    return UpstreamOut(
        id=upstream.id,
        name=upstream.name,
        transport=upstream.transport,
        url=upstream.url,
        command=upstream.command,
        args=list(upstream.args or []),
        env=service.masked_headers(runtime.keyring, upstream, "env_envelope"),
        auth=upstream.auth_mode,
        headers=service.masked_headers(runtime.keyring, upstream, "headers_envelope"),
        broker_service=upstream.broker_service,
        broker_header=upstream.broker_header,
        price=upstream.price,
        tool_prices=dict(upstream.tool_prices or {}),
        tools_allowed=list(upstream.tools_allowed or []),
        tools_denied=list(upstream.tools_denied or []),
        timeout_seconds=upstream.timeout_seconds,
        enabled=upstream.enabled,
        protocol_era=upstream.protocol_era,
        state=upstream.state,
        last_error=upstream.last_error,
        last_seen_at=upstream.last_seen_at,
        catalogue_updated_at=upstream.catalogue_updated_at,
        tools=[
            ToolSummary(
                name=f"{upstream.name}__{t.name}",
                upstream_tool=t.name,
                price=policy.price_of(t.name),
                description=t.description,
            )
            for t in listing.tools
            if policy.offers(t.name)
        ],
        resources=len(listing.resources),
        prompts=len(listing.prompts),
        created_at=upstream.created_at,
    )


async def describe(runtime: Runtime, gateway: Gateway, name: str) -> UpstreamOut:
    """One upstream as admins see it."""
    async with runtime.sessions() as session:
        return _out(runtime, gateway, await service.get(session, name))


async def describe_all(runtime: Runtime, gateway: Gateway) -> list[UpstreamOut]:
    """Every upstream as admins see it."""
    async with runtime.sessions() as session:
        return [_out(runtime, gateway, u) for u in await service.list_all(session)]


async def register(
    runtime: Runtime,
    gateway: Gateway,
    body: UpstreamCreate,
    actor: User,
    served_at: tuple[str, int] | None = None,
) -> UpstreamOut:
    """Vet, store and connect a new upstream, and describe it with the tools it offers.

    An upstream that turns out to be this Tollgate (it reports our own id) is removed again
    and refused. ``served_at`` is the address the request came in on (one of ours).
    """
    if body.transport == "stdio":
        check_stdio_allowed(runtime.settings, is_superuser=actor.is_superuser)
    elif body.url:
        await check_upstream_url(runtime.settings, body.url, served_at)
    async with transaction(runtime.sessions) as session:
        await service.create(session, runtime.keyring, body)
    await gateway.sync()
    with anyio.move_on_after(FIRST_CONTACT_SECONDS):
        await gateway.first_contact(body.name)
    if gateway.refused_as_self(body.name):
        await remove(runtime, gateway, body.name)
        raise UpstreamIsSelf()
    return await describe(runtime, gateway, body.name)


async def change(
    runtime: Runtime,
    gateway: Gateway,
    name: str,
    body: UpstreamUpdate,
    actor: User,
    served_at: tuple[str, int] | None = None,
) -> UpstreamOut:
    """Vet and apply changes, and reconnect when how to reach the upstream changed.

    Changing what a stdio upstream runs (command, args, env) takes what adding one takes.
    A change that makes the upstream this Tollgate leaves it disabled, and is refused.
    """
    if STDIO_FIELDS & body.model_fields_set:
        check_stdio_allowed(runtime.settings, is_superuser=actor.is_superuser)
    if body.url:
        await check_upstream_url(runtime.settings, body.url, served_at)
    async with transaction(runtime.sessions) as session:
        upstream = await service.get(session, name)
        await service.update(session, runtime.keyring, upstream, body)
    await gateway.sync()
    with anyio.move_on_after(FIRST_CONTACT_SECONDS):
        await gateway.first_contact(name)
    if gateway.refused_as_self(name):
        async with transaction(runtime.sessions) as session:
            upstream = await service.get(session, name)
            await service.update(session, runtime.keyring, upstream, UpstreamUpdate(enabled=False))
        await gateway.sync()
        raise UpstreamIsSelf(f"{UpstreamIsSelf.message}; it was disabled")
    return await describe(runtime, gateway, name)


async def refresh(runtime: Runtime, gateway: Gateway, name: str) -> UpstreamOut:
    """Re-read an upstream's catalogue now."""
    await describe(runtime, gateway, name)
    try:
        await gateway.refresh(name)
    except Exception as exc:  # whatever it was, the upstream's own words stay out
        raise ServiceUnavailable(
            f"Upstream {name}: {describe_failure(exc, _last_status(gateway, name))}",
            code="upstream_unavailable",
        ) from exc
    return await describe(runtime, gateway, name)


def _last_status(gateway: Gateway, name: str) -> int | None:
    connection = gateway.pool.shared(name)
    return connection.last_http_error if connection is not None else None


async def remove(runtime: Runtime, gateway: Gateway, name: str) -> None:
    """Delete an upstream and close its sessions."""
    async with transaction(runtime.sessions) as session:
        await service.delete(session, await service.get(session, name))
    await gateway.sync()


async def probe(runtime: Runtime, name: str) -> tuple[bool, str | None]:
    """Connect to an upstream once (outside a server), store its catalogue and state.

    Returns whether it answered and the error when it did not. A running server picks the
    stored catalogue and any registration change up at its next sync.
    """
    async with runtime.sessions() as session:
        spec = service.connection_spec(runtime.keyring, await service.get(session, name))
    outcome: dict[str, tuple[bool, str | None]] = {}

    async def on_listing(upstream: str, listing: UpstreamListing) -> None:
        async with transaction(runtime.sessions) as session:
            await service.save_listing(session, upstream, listing)

    async def on_state(upstream: str, up: bool, error: str | None, era: str | None) -> None:
        outcome["result"] = (up, error)
        async with transaction(runtime.sessions) as session:
            await service.save_state(session, upstream, up, error, era)
        connection.stop()

    connection = UpstreamConnection(
        spec,
        on_listing=on_listing,
        on_state=on_state,
        own_gateway_id=gateway_id(runtime.settings),
    )
    with anyio.move_on_after(FIRST_CONTACT_SECONDS):
        await connection.run()
    if connection.refused is not None:
        raise connection.refused
    return outcome.get("result", (False, "no answer in time"))
