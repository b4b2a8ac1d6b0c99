"""Upstream administration (``/api/v1/upstreams``) and the ``/mcp`` resource metadata."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response

from tollgate.core.deps import RuntimeDep
from tollgate.core.state import component
from tollgate.gateway import admin
from tollgate.gateway.addresses import public_base_url
from tollgate.gateway.hub import Gateway
from tollgate.gateway.schemas import UpstreamCreate, UpstreamOut, UpstreamUpdate
from tollgate.gateway.server import MCP_PATH
from tollgate.identity.deps import require
from tollgate.identity.models import User

router = APIRouter(prefix="/api/v1/upstreams", tags=["upstreams"])
metadata_router = APIRouter(tags=["mcp"])

UpstreamsAdmin = Annotated[User, Depends(require("upstreams.manage"))]
Name = Annotated[str, Path(pattern=r"^[a-z][a-z0-9-]{0,31}$")]


GatewayDep = Annotated[Gateway, Depends(component(Gateway))]
"""The process's gateway, built by ``create_app``."""


def served_at(request: Request) -> tuple[str, int] | None:
    """The address and port this request came in on: one of this server's own."""
    server = request.scope.get("server")
    return (str(server[0]), int(server[1])) if server and server[1] else None


@metadata_router.get("/.well-known/oauth-protected-resource/mcp")
async def protected_resource_metadata(request: Request, runtime: RuntimeDep) -> dict[str, Any]:
    """RFC 9728 metadata of the ``/mcp`` resource. Public."""
    base = public_base_url(runtime.settings, request.scope)
    return {
        "resource": f"{base}{MCP_PATH}",
        "authorization_servers": [base],
        "bearer_methods_supported": ["header"],
        "resource_name": "Tollgate MCP gateway",
        "resource_documentation": f"{base}/api/v1/docs",
    }


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
    return await admin.register(runtime, gateway, body, actor, served_at(request))


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
    return await admin.change(runtime, gateway, name, body, actor, served_at(request))


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
