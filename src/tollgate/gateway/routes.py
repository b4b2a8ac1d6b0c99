"""Upstream and virtual server administration (``/api/v1/upstreams``, ``/api/v1/servers``)
and the protected-resource metadata of ``/mcp`` and each virtual server."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response

from tollgate.core.deps import RuntimeDep
from tollgate.core.errors import NotFound
from tollgate.core.state import component
from tollgate.gateway import admin, server_admin
from tollgate.gateway.addresses import public_base_url, served_at
from tollgate.gateway.hub import Gateway
from tollgate.gateway.schemas import (
    UpstreamCreate,
    UpstreamOut,
    UpstreamUpdate,
    VirtualServerCreate,
    VirtualServerFields,
    VirtualServerOut,
)
from tollgate.gateway.server import MCP_PATH, PROTECTED_RESOURCE_ROOT
from tollgate.gateway.servers import path_of
from tollgate.identity.deps import require
from tollgate.identity.models import User

router = APIRouter(prefix="/api/v1/upstreams", tags=["upstreams"])
servers_router = APIRouter(prefix="/api/v1/servers", tags=["virtual servers"])
metadata_router = APIRouter(tags=["mcp"])

UpstreamsAdmin = Annotated[User, Depends(require("upstreams.manage"))]
ServersAdmin = Annotated[User, Depends(require("servers.manage"))]
Name = Annotated[str, Path(pattern=r"^[a-z][a-z0-9-]{0,31}$")]


GatewayDep = Annotated[Gateway, Depends(component(Gateway))]
"""The process's gateway, built by ``create_app``."""


def _resource_metadata(base: str, path: str, name: str) -> dict[str, Any]:
    return {
        "resource": f"{base}{path}",
        "authorization_servers": [base],
        "bearer_methods_supported": ["header"],
        "resource_name": name,
        "resource_documentation": f"{base}/api/v1/docs",
    }


@metadata_router.get(f"{PROTECTED_RESOURCE_ROOT}{MCP_PATH}")
async def protected_resource_metadata(request: Request, runtime: RuntimeDep) -> dict[str, Any]:
    """RFC 9728 metadata of the ``/mcp`` resource. Public."""
    base = public_base_url(runtime.settings, request.scope)
    return _resource_metadata(base, MCP_PATH, "Tollgate MCP gateway")


@metadata_router.get(PROTECTED_RESOURCE_ROOT + "/servers/{name}/mcp")
async def server_resource_metadata(
    name: Name, request: Request, runtime: RuntimeDep, gateway: GatewayDep
) -> dict[str, Any]:
    """RFC 9728 metadata of a virtual server's MCP resource. Public."""
    view = gateway.view(name)
    if view is None or view.spec is None:
        raise NotFound(f"No virtual server named {name}", code="server_not_found")
    base = public_base_url(runtime.settings, request.scope)
    return _resource_metadata(base, path_of(name), view.spec.title or f"Tollgate: {name}")


@router.get("", response_model=list[UpstreamOut])
async def list_upstreams(
    _: UpstreamsAdmin, runtime: RuntimeDep, gateway: GatewayDep
) -> list[UpstreamOut]:
    """Every upstream with its state and tools. Needs ``upstreams.manage``."""
    return await admin.describe_all(runtime, gateway)


@router.post("", response_model=UpstreamOut, status_code=201)
async def add_upstream(
    body: UpstreamCreate,
    request: Request,
    actor: UpstreamsAdmin,
    runtime: RuntimeDep,
    gateway: GatewayDep,
) -> UpstreamOut:
    """Register an upstream, connect to it and answer with the tools found.

    Needs ``upstreams.manage``; a stdio upstream also needs a superuser and
    ``TOLLGATE_ALLOW_STDIO_UPSTREAMS``.
    """
    return await admin.register(runtime, gateway, body, actor, served_at(request.scope))


@router.get("/{name}", response_model=UpstreamOut)
async def read_upstream(
    name: Name, _: UpstreamsAdmin, runtime: RuntimeDep, gateway: GatewayDep
) -> UpstreamOut:
    """One upstream. Needs ``upstreams.manage``."""
    return await admin.describe(runtime, gateway, name)


@router.patch("/{name}", response_model=UpstreamOut)
async def update_upstream(
    name: Name,
    body: UpstreamUpdate,
    request: Request,
    actor: UpstreamsAdmin,
    runtime: RuntimeDep,
    gateway: GatewayDep,
) -> UpstreamOut:
    """Change an upstream (price, lists, timeout, enabled...). Needs ``upstreams.manage``;
    changing a command, its args or env needs what adding a stdio upstream needs."""
    return await admin.change(runtime, gateway, name, body, actor, served_at(request.scope))


@router.post("/{name}/refresh", response_model=UpstreamOut)
async def refresh_upstream(
    name: Name, _: UpstreamsAdmin, runtime: RuntimeDep, gateway: GatewayDep
) -> UpstreamOut:
    """Read the upstream's tools, resources and prompts now. Needs ``upstreams.manage``."""
    return await admin.refresh(runtime, gateway, name)


@router.delete("/{name}", status_code=204)
async def remove_upstream(
    name: Name, _: UpstreamsAdmin, runtime: RuntimeDep, gateway: GatewayDep
) -> Response:
    """Remove an upstream and close its sessions. Needs ``upstreams.manage``."""
    await admin.remove(runtime, gateway, name)
    return Response(status_code=204)


@servers_router.get("", response_model=list[VirtualServerOut])
async def list_servers(
    _: ServersAdmin, runtime: RuntimeDep, gateway: GatewayDep
) -> list[VirtualServerOut]:
    """Every virtual server. Needs ``servers.manage``."""
    return await server_admin.describe_all(runtime, gateway)


@servers_router.post("", response_model=VirtualServerOut, status_code=201)
async def add_server(
    body: VirtualServerCreate, _: ServersAdmin, runtime: RuntimeDep, gateway: GatewayDep
) -> VirtualServerOut:
    """Define a virtual server, served at ``/servers/<name>/mcp`` at once. Needs
    ``servers.manage``."""
    return await server_admin.create(runtime, gateway, body)


@servers_router.get("/{name}", response_model=VirtualServerOut)
async def read_server(
    name: Name, _: ServersAdmin, runtime: RuntimeDep, gateway: GatewayDep
) -> VirtualServerOut:
    """One virtual server. Needs ``servers.manage``."""
    return await server_admin.read(runtime, gateway, name)


@servers_router.patch("/{name}", response_model=VirtualServerOut)
async def update_server(
    name: Name,
    body: VirtualServerFields,
    _: ServersAdmin,
    runtime: RuntimeDep,
    gateway: GatewayDep,
) -> VirtualServerOut:
    """Change what a virtual server offers, or to whom. Needs ``servers.manage``."""
    return await server_admin.change(runtime, gateway, name, body)


@servers_router.delete("/{name}", status_code=204)
async def remove_server(
    name: Name, _: ServersAdmin, runtime: RuntimeDep, gateway: GatewayDep
) -> Response:
    """Delete a virtual server. Needs ``servers.manage``."""
    await server_admin.remove(runtime, gateway, name)
    return Response(status_code=204)
