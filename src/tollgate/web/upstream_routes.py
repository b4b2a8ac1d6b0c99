"""The upstreams page: each upstream's health, its tools and their prices, its allow and
deny lists, a refresh; and adding one. Every route needs ``upstreams.manage``, as
``/api/v1/upstreams`` does."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Path
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from tollgate.core.deps import RuntimeDep
from tollgate.core.errors import TollgateError
from tollgate.core.runtime import Runtime
from tollgate.gateway import admin as upstream_admin
from tollgate.gateway.addresses import served_at
from tollgate.gateway.hub import Gateway
from tollgate.gateway.schemas import UpstreamCreate, UpstreamUpdate
from tollgate.web import forms
from tollgate.web.pages import GatewayDep, PageRoute, Visit, posting, problem, visiting
from tollgate.web.session import PAGES_PATH

router = APIRouter(include_in_schema=False, route_class=PageRoute)
UpstreamsVisit = Annotated[Visit, Depends(visiting("upstreams.manage"))]
UpstreamsPost = Annotated[Visit, Depends(posting("upstreams.manage"))]
UpstreamName = Annotated[str, Path(pattern=r"^[a-z][a-z0-9-]{0,31}$")]
UPSTREAMS = f"{PAGES_PATH}/admin/upstreams"


async def _view(visit: Visit, runtime: Runtime, gateway: Gateway, **extra: Any) -> HTMLResponse:
    found = await upstream_admin.describe_all(runtime, gateway)
    if extra.get("error_for") not in {"add", *(u.name for u in found)}:
        extra["error_for"] = None  # about no form shown here: at the top of the page
    return visit.render("upstreams.html", upstreams=found, pairs=forms.written_pairs, **extra)


@router.get(UPSTREAMS)
async def upstreams_page(
    visit: UpstreamsVisit, runtime: RuntimeDep, gateway: GatewayDep
) -> HTMLResponse:
    """The upstreams with their state, tools, prices and lists. Needs ``upstreams.manage``."""
    return await _view(visit, runtime, gateway)


@router.post(UPSTREAMS)
async def add_upstream(
    visit: UpstreamsPost,
    runtime: RuntimeDep,
    gateway: GatewayDep,
    name: Annotated[str, Form(max_length=32)] = "",
    url: Annotated[str, Form(max_length=2000)] = "",
    price: Annotated[str, Form(max_length=20)] = "1",
) -> HTMLResponse:
    """Register a Streamable HTTP upstream. Needs ``upstreams.manage``."""
    try:
        body = UpstreamCreate(name=name, url=url, price=forms.whole_number(price, "The price"))
        await upstream_admin.register(
            runtime, gateway, body, visit.user, served_at(visit.request.scope)
        )
    except (ValidationError, TollgateError) as refused:
        return await _view(visit, runtime, gateway, error=problem(refused), error_for="add")
    return await _view(visit, runtime, gateway, notice=f"Added {name}.")


@router.post(f"{UPSTREAMS}/{{name}}/policy")
async def change_policy(
    name: UpstreamName,
    visit: UpstreamsPost,
    runtime: RuntimeDep,
    gateway: GatewayDep,
    price: Annotated[str, Form(max_length=20)] = "1",
    tool_prices: Annotated[str, Form(max_length=100_000)] = "",
    allowed: Annotated[str, Form(max_length=100_000)] = "",
    denied: Annotated[str, Form(max_length=100_000)] = "",
    enabled: Annotated[str, Form(max_length=3)] = "",
) -> HTMLResponse:
    """Change an upstream's price, per-tool prices, allow and deny lists, and whether it is
    offered. Needs ``upstreams.manage``."""
    try:
        body = UpstreamUpdate.model_validate(
            {
                "price": forms.whole_number(price, "The price"),
                "tool_prices": forms.pairs(tool_prices),
                "tools_allowed": forms.lines(allowed),
                "tools_denied": forms.lines(denied),
                "enabled": enabled == "yes",
            }
        )
        await upstream_admin.change(
            runtime, gateway, name, body, visit.user, served_at(visit.request.scope)
        )
    except (ValidationError, TollgateError) as refused:
        error = problem(refused)
        return await _view(visit, runtime, gateway, error=error, error_for=name)
    return await _view(visit, runtime, gateway, notice=f"Saved {name}.", notice_for=name)


@router.post(f"{UPSTREAMS}/{{name}}/refresh")
async def refresh_upstream(
    name: UpstreamName,
    visit: UpstreamsPost,
    runtime: RuntimeDep,
    gateway: GatewayDep,
) -> HTMLResponse:
    """Read the upstream's tools, resources and prompts now. Needs ``upstreams.manage``."""
    try:
        found = await upstream_admin.refresh(runtime, gateway, name)
    except TollgateError as refused:
        error = problem(refused)
        return await _view(visit, runtime, gateway, error=error, error_for=name)
    notice = f"Refreshed {name}: {len(found.tools)} tools offered."
    return await _view(visit, runtime, gateway, notice=notice, notice_for=name)
