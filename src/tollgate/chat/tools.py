"""Tools from an MCP server other than Tollgate itself (allowed only where settings say so),
through the official client; Tollgate's own tools come through the gateway (see app.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import mcp_types as types
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

from tollgate.chat.conversation import ToolSpec
from tollgate.chat.loop import ToolOutcome

CONNECT_TIMEOUT_SECONDS = 10.0
CALL_TIMEOUT_SECONDS = 120.0


def spec_of(tool: types.Tool) -> ToolSpec:
    """An MCP tool as the model is offered it."""
    return ToolSpec(tool.name, tool.description or "", dict(tool.input_schema))


def outcome_of(result: types.CallToolResult, credits: int | None = None) -> ToolOutcome:
    """A tool result as the model reads it: its text blocks, or the structured content."""
    texts = [c.text for c in result.content if isinstance(c, types.TextContent)]
    if not texts and result.structured_content is not None:
        texts = [str(result.structured_content)]
    return ToolOutcome("\n".join(texts) or "(no text)", bool(result.is_error), credits)


class ExternalTools:
    """The tools of one MCP server, over one client session for the turn."""

    def __init__(self, client: Client) -> None:
        self._client = client

    async def tools(self) -> list[ToolSpec]:
        """See :class:`tollgate.chat.loop.ToolSource`."""
        return [spec_of(t) for t in (await self._client.list_tools()).tools]

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        """See :class:`tollgate.chat.loop.ToolSource`."""
        try:
            result = await self._client.call_tool(
                name, arguments, read_timeout_seconds=CALL_TIMEOUT_SECONDS
            )
        except MCPError as exc:
            return ToolOutcome(f"The tool failed: {exc.message}", True)
        return outcome_of(result)


@asynccontextmanager
async def external_tools(url: str, token: str | None) -> AsyncIterator[ExternalTools]:
    """A session to the MCP server at ``url`` (``Authorization: Bearer token`` if given)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    http = httpx2.AsyncClient(
        headers=headers, timeout=httpx2.Timeout(CONNECT_TIMEOUT_SECONDS, read=CALL_TIMEOUT_SECONDS)
    )
    try:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            yield ExternalTools(client)
    finally:
        await http.aclose()
