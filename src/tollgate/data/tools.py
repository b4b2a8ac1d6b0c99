"""The same data as MCP tools: a built-in upstream ``data`` served in process.

``data__list_records``, ``data__get_record`` and ``data__query_records`` go through the
gateway like any other tool: metered, recorded, and answered with the same records (minus
the same fields) as the WebSocket protocol.
"""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types
from mcp.server import Server, ServerRequestContext

from tollgate import __version__
from tollgate.data.protocol import perform
from tollgate.data.source import DEFAULT_LIMIT, MAX_LIMIT, DataError, DataSource

UPSTREAM_NAME = "data"

_FILTER_VALUE = {"type": ["string", "number", "integer", "boolean", "null"]}


def _schemas(models: list[str]) -> dict[str, dict[str, Any]]:
    model = {"type": "string", "enum": models, "description": "An allowed model (table)"}
    paging = {
        "limit": {
            "type": "integer",
            "minimum": 1,
            "description": f"Records to return (default {DEFAULT_LIMIT}, at most {MAX_LIMIT})",
        },
        "offset": {"type": "integer", "minimum": 0, "description": "Records to skip"},
    }
    filters = {
        "type": "object",
        "additionalProperties": _FILTER_VALUE,
        "description": "Exact-match filters: field -> value",
    }
    return {
        "list_records": {
            "type": "object",
            "properties": {"model": model, **paging, "filters": filters},
            "required": ["model"],
        },
        "get_record": {
            "type": "object",
            "properties": {"model": model, "id": {"type": ["integer", "string"]}},
            "required": ["model", "id"],
        },
        "query_records": {
            "type": "object",
            "properties": {"model": model, "filters": filters, **paging},
            "required": ["model", "filters"],
        },
    }


DESCRIPTIONS = {
    "list_records": "List records of an allowed model, with paging and exact-match filters.",
    "get_record": "Get one record of an allowed model by its id.",
    "query_records": "Records of an allowed model matching exact-match filters.",
}


def data_server(source: DataSource) -> Server[Any]:
    """An in-process MCP server exposing the data source read-only."""
    schemas = _schemas(list(source.allowed))
    tools = [
        types.Tool(
            name=name,
            description=DESCRIPTIONS[name],
            input_schema=schema,
            annotations=types.ToolAnnotations(read_only_hint=True, open_world_hint=False),
        )
        for name, schema in schemas.items()
    ]

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools)

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        arguments = params.arguments or {}
        try:
            payload = await _run(source, params.name, arguments)
        except DataError as refused:
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=str(refused))], is_error=True
            )
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=json.dumps(payload))],
            structured_content=payload,
        )

    return Server(
        UPSTREAM_NAME, version=__version__, on_list_tools=list_tools, on_call_tool=call_tool
    )


TOOL_ACTIONS = {"list_records": "list", "get_record": "get", "query_records": "query"}
"""Each tool is one action of the WebSocket protocol, answered by the same code."""


async def _run(source: DataSource, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    model = arguments.get("model")
    if not isinstance(model, str):
        raise DataError("Missing required parameter: model")
    if tool not in TOOL_ACTIONS:
        raise DataError(f"Unknown tool: {tool}")
    return await perform(source, TOOL_ACTIONS[tool], model, arguments)
