"""Virtual server administration: what ``/api/v1/servers`` and ``tollgate server`` do."""

from __future__ import annotations

from tollgate.core.database import transaction
from tollgate.core.runtime import Runtime
from tollgate.gateway import servers
from tollgate.gateway.hub import Gateway
from tollgate.gateway.models import VirtualServer
from tollgate.gateway.schemas import VirtualServerCreate, VirtualServerFields, VirtualServerOut
from tollgate.gateway.views import View


def describe(gateway: Gateway, row: VirtualServer) -> VirtualServerOut:
    """A virtual server as admins see it, with the tool names it offers now."""
    offered = View(gateway.catalogue, servers.spec_of(row)).tools_result().tools
    return VirtualServerOut(
        id=row.id,
        name=row.name,
        path=servers.path_of(row.name),
        title=row.title,
        description=row.description,
        tools=list(row.tools),
        resources=list(row.resources),
        prompts=list(row.prompts),
        prefixed=row.prefixed,
        allowed_users=list(row.allowed_users),
        allowed_organizations=list(row.allowed_organizations),
        enabled=row.enabled,
        offered_tools=[tool.name for tool in offered],
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def describe_all(runtime: Runtime, gateway: Gateway) -> list[VirtualServerOut]:
    """Every virtual server."""
    async with runtime.sessions() as session:
        return [describe(gateway, row) for row in await servers.list_all(session)]


async def read(runtime: Runtime, gateway: Gateway, name: str) -> VirtualServerOut:
    """One virtual server, or NotFound."""
    async with runtime.sessions() as session:
        return describe(gateway, await servers.get(session, name))


async def create(runtime: Runtime, gateway: Gateway, body: VirtualServerCreate) -> VirtualServerOut:
    """Store a virtual server whose items name known upstreams, and serve it at once."""
    async with transaction(runtime.sessions) as session:
        row = await servers.create(session, body)
        servers.check(servers.spec_of(row), gateway.upstreams)
    await gateway.sync()
    return await read(runtime, gateway, body.name)


async def change(
    runtime: Runtime, gateway: Gateway, name: str, body: VirtualServerFields
) -> VirtualServerOut:
    """Apply changes to a virtual server (refused, and nothing changed, when the result
    names an unknown upstream)."""
    async with transaction(runtime.sessions) as session:
        row = await servers.update(session, await servers.get(session, name), body)
        servers.check(servers.spec_of(row), gateway.upstreams)
    await gateway.sync()
    return await read(runtime, gateway, name)


async def remove(runtime: Runtime, gateway: Gateway, name: str) -> None:
    """Delete a virtual server; its path answers 404 from now on."""
    async with transaction(runtime.sessions) as session:
        await servers.delete(session, await servers.get(session, name))
    await gateway.sync()
