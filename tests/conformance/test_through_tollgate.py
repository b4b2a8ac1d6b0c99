"""The MCP conformance suite through Tollgate: the python-sdk's everything-server behind an
unprefixed virtual server, compared scenario by scenario with the suite run against the
server directly. Every scenario that passes directly must pass through Tollgate."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conformance.harness import (
    LEGS,
    SERVER_START_SECONDS,
    SUITE_TIMEOUT_SECONDS,
    everything_server,
    failures,
    require_suite,
    run_legs_checks,
    scenario_passed,
)
from tests.conformance.proxy import KeyProxy
from tests.gateway.conftest import http_to, quick_member, register_upstream, serving
from tests.gateway.upstream import serve_in_thread
from tollgate.core.settings import Settings
from tollgate.identity.models import Role


@pytest.mark.timeout(SERVER_START_SECONDS * 2 + 2 * len(LEGS) * SUITE_TIMEOUT_SECONDS)
async def test_every_scenario_passing_directly_passes_through_a_virtual_server(
    settings: Settings, tmp_path: Path
) -> None:
    require_suite()
    with everything_server(tmp_path / "everything-server.log") as upstream_url:
        async with serving(settings) as gateway:
            admin = await quick_member(gateway, role=Role.ADMIN)
            await register_upstream(gateway, admin, name="everything", url=upstream_url)
            everything = ["everything__*"]
            body = {"name": "everything", "prefixed": False, "tools": everything}
            body |= {"resources": everything, "prompts": everything}
            async with http_to(gateway) as http:
                created = await http.post("/api/v1/servers", json=body, headers=admin.jwt_headers)
            assert created.status_code == 201, created.text
            user = await quick_member(gateway, credits=100_000)
            url, stop = await asyncio.to_thread(
                serve_in_thread, KeyProxy(gateway.url, user.key), ""
            )
            try:
                through = await asyncio.to_thread(run_legs_checks, f"{url}/servers/everything/mcp")
            finally:
                await asyncio.to_thread(stop)
        direct = await asyncio.to_thread(run_legs_checks, upstream_url)

    passing_directly = {name for name, checks in direct.items() if scenario_passed(checks)}
    passing_through = {name for name, checks in through.items() if scenario_passed(checks)}
    lost = passing_directly - passing_through
    for name in sorted(lost):
        print(f"lost through Tollgate: {name}: {failures(through.get(name, []))}")
    assert passing_directly
    assert not lost, {name: failures(through.get(name, [])) for name in sorted(lost)}
