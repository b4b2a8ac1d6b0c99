"""Setting up a chat test: an upstream, an LLM provider and model, and a user."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.gateway.conftest import Gateway, Member, http_to, quick_member, register_upstream
from tollgate.identity.models import Role

PRICE = 2
"""Credits one echo call costs."""

API_KEY = "sk-scripted-secret"


async def configure(gateway: Gateway, upstream_url: str, llm_url: str, kind: str) -> Member:
    """Register the echo upstream and a provider of ``kind`` with model ``m1``; the admin."""
    admin = await quick_member(gateway, role=Role.ADMIN)
    await register_upstream(gateway, admin, name="echo", url=upstream_url, price=PRICE)
    base_url = f"{llm_url}/v1" if kind == "openai" else llm_url
    provider = {"name": "scripted", "kind": kind, "base_url": base_url, "api_key": API_KEY}
    model = {
        "provider": "scripted",
        "model_id": "m1",
        "display_name": "Model One",
        "input_price_per_million": "1000",
        "output_price_per_million": "2000",
    }
    async with http_to(gateway) as http:
        for path, body in (("/api/v1/llm/providers", provider), ("/api/v1/llm/models", model)):
            response = await http.post(path, json=body, headers=admin.jwt_headers)
            assert response.status_code == 201, response.text
    return admin


async def post(gateway: Gateway, member: Member, path: str, body: dict[str, Any]) -> httpx.Response:
    """POST to the gateway as ``member``."""
    async with http_to(gateway) as http:
        return await http.post(path, json=body, headers=member.jwt_headers)


async def connected(gateway: Gateway, member: Member, **body: Any) -> dict[str, Any]:
    """Connect ``member``'s chat session to model ``m1``."""
    response = await post(gateway, member, "/llmchat/connect", {"llm": {"model": "m1"}, **body})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def events_of(stream: str) -> list[tuple[str, dict[str, Any]]]:
    """The server-sent events of a response body, as (event, data)."""
    found = []
    for block in stream.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        found.append((lines["event"], json.loads(lines["data"])))
    return found
