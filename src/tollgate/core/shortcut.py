"""An ASGI middleware that sends a few exact paths straight to their own application.

FastAPI matches a request against every route in order; the MCP endpoint is mounted last, so
each ``/mcp`` request paid for a walk over the whole API's route table before it was served.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class PathShortcut:
    """Requests for ``paths`` go to ``target``; everything else (lifespan too) to ``app``."""

    def __init__(self, app: ASGIApp, *, paths: frozenset[str], target: ASGIApp) -> None:
        self.app = app
        self.paths = paths
        self.target = target

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in self.paths:
            await self.target(scope, receive, send)
            return
        await self.app(scope, receive, send)
