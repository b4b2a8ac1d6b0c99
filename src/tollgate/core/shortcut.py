"""An ASGI middleware that sends a few exact paths straight to their own application.

FastAPI matches a request against every route in order; the MCP endpoint is mounted last, so
each ``/mcp`` request paid for a walk over the whole API's route table before it was served.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class PathShortcut:
    """Requests for ``paths`` (or under ``prefix``) go to ``target``; everything else
    (lifespan too) to ``app``."""

    def __init__(
        self, app: ASGIApp, *, paths: frozenset[str], target: ASGIApp, prefix: str | None = None
    ) -> None:
        self.app = app
        self.paths = paths
        self.target = target
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (
            path in self.paths or (self.prefix is not None and path.startswith(self.prefix))
        ):
            await self.target(scope, receive, send)
            return
        await self.app(scope, receive, send)
