"""Diagnostic tools the conformance suite's ``server-stateless`` scenario calls, which the
python-sdk's fixture (vendored beside this file, at the commit its README names) does not
have yet. Tollgate's own addition: without them that scenario's checks of the response
stream could not be exercised, directly or through a gateway.

- ``test_streaming_elicitation``: asks for the user's name (an input-required result on the
  2026-07-28 wire, an ``elicitation/create`` request on the handshake one). The suite checks
  that the answer stream carries no request of its own.
- ``test_logging_tool``: logs a line at each of three levels. The suite checks that nothing
  is logged to a request that did not ask for a log level.
"""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import AcceptedElicitation, Context, Elicit, ElicitationResult, Resolve
from pydantic import BaseModel

from .server import mcp


class _Name(BaseModel):
    name: str


def _ask_name() -> Elicit[_Name]:
    return Elicit("What is your name?", _Name)


@mcp.tool()
async def test_streaming_elicitation(answer: Annotated[ElicitationResult[_Name], Resolve(_ask_name)]) -> str:
    """Asks the user for their name (in either era), then greets them."""
    return f"Hello, {answer.data.name}!" if isinstance(answer, AcceptedElicitation) else answer.action


@mcp.tool()
async def test_logging_tool(ctx: Context) -> str:
    """Logs a debug, an info and a warning line."""
    await ctx.debug("debug line")  # pyright: ignore[reportDeprecated]
    await ctx.info("info line")  # pyright: ignore[reportDeprecated]
    await ctx.warning("warning line")  # pyright: ignore[reportDeprecated]
    return "logged"
