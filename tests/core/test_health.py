"""/health and the API documentation routes."""

from __future__ import annotations

import re

import httpx

from tollgate import __version__


async def test_health_reports_database_cache_and_version(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["database"] == "ok"
    assert body["cache"] == "ok"
    assert body["version"] == __version__


async def test_openapi_and_docs_are_served_under_api_v1(client: httpx.AsyncClient) -> None:
    spec = await client.get("/api/v1/openapi.json")
    assert spec.status_code == 200
    assert "/api/mcp/enable" in spec.json()["paths"]
    for page in ("/api/v1/docs", "/api/v1/redoc"):
        assert (await client.get(page)).status_code == 200


async def test_unknown_path_gets_json_error_with_code(client: httpx.AsyncClient) -> None:
    response = await client.get("/no/such/path")
    assert response.status_code == 404
    assert response.json()["detail"]["code"] == "not_found"


async def test_docs_pages_load_their_assets_from_tollgate_itself(
    client: httpx.AsyncClient,
) -> None:
    pages = [(await client.get(page)).text for page in ("/api/v1/docs", "/api/v1/redoc")]
    assets = re.findall(r'(?:src|href)="([^"]+)"', "".join(pages))
    spec = (await client.get("/api/v1/openapi.json")).json()

    assert assets
    assert all(a.startswith("/api/v1/") for a in assets), assets
    for asset in assets:
        assert (await client.get(asset)).status_code == 200, asset
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
