"""Seed 002's message protocol: one JSON request in, one JSON response out.

Request: ``{"id", "action": "list|get|query", "model", "params"}``. Response: the request's
``id``, ``status`` ``ok`` or ``error``, and ``data`` (with ``count``, ``limit``, ``offset``
for lists) or ``error``. Every failure is an error reply; nothing a client sends can crash
the connection or reach a sensitive field.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

from tollgate.data.source import DataError, DataSource, QueryFailed

logger = logging.getLogger(__name__)

READ_ACTIONS = frozenset({"list", "get", "query"})
WRITE_ACTIONS = frozenset({"create", "update", "delete", "insert", "upsert", "patch"})
RATE_WINDOW_SECONDS = 60
"""Seed 002: MCP_RATE_LIMIT requests per 60 seconds, per connection."""

MAX_FRAME_BYTES = 64 * 1024
"""Requests are small JSON objects; anything bigger is refused unread."""


@dataclass(frozen=True)
class Reply:
    """A response, and whether the connection must close after it."""

    body: dict[str, Any]
    close: bool = False


def error(message: str, request_id: Any = None) -> dict[str, Any]:
    """An error response (with the request's id when it had one)."""
    body: dict[str, Any] = {"status": "error", "error": message}
    if request_id is not None:
        body = {"id": request_id, **body}
    return body


class RateLimiter:
    """At most ``limit`` requests in any ``window`` seconds, for one connection."""

    def __init__(self, limit: int, window: float = RATE_WINDOW_SECONDS) -> None:
        self.limit = limit
        self.window = window
        self._times: deque[float] = deque()

    def allow(self, now: float) -> bool:
        """Count a request at ``now``; False once the window is full."""
        while self._times and now - self._times[0] >= self.window:
            self._times.popleft()
        if len(self._times) >= self.limit:
            return False
        self._times.append(now)
        return True


class Handler:
    """Answers requests against one data source."""

    def __init__(self, source: DataSource, *, readonly: bool) -> None:
        self.source = source
        self.readonly = readonly

    async def handle_text(self, text: str | bytes) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """The decoded request (None when it is not one) and the response to one frame."""
        size = len(text.encode(errors="surrogatepass")) if isinstance(text, str) else len(text)
        if size > MAX_FRAME_BYTES:
            return None, error(f"Message too large: at most {MAX_FRAME_BYTES} bytes")
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):
            return None, error("Invalid JSON")
        if not isinstance(message, dict):
            return None, error("Invalid request: expected a JSON object")
        return message, await self.handle(message)

    async def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        """The response to one decoded request."""
        request_id = message.get("id")
        if (
            request_id is None
            or not isinstance(request_id, str | int)
            or isinstance(request_id, bool)
        ):
            return error("Missing required field: id")
        action = message.get("action")
        if not isinstance(action, str) or not action:
            return error("Missing required field: action", request_id)
        if action in WRITE_ACTIONS:
            if self.readonly:
                return error(
                    f"Write operations not allowed in read-only mode: {action}", request_id
                )
            return error(f"Write operations are not supported: {action}", request_id)
        if action not in READ_ACTIONS:
            return error(f"Unknown action: {action}", request_id)
        model = message.get("model")
        if not isinstance(model, str) or not model:
            return error("Missing required field: model", request_id)
        params = message.get("params") or {}
        if not isinstance(params, dict):
            return error("Invalid parameter: params must be an object", request_id)
        try:
            return {
                "id": request_id,
                "status": "ok",
                **await perform(self.source, action, model, params),
            }
        except DataError as refused:
            return error(str(refused), request_id)
        except Exception:
            logger.exception("MCP %s query failed for model %s", action, model)
            return error("Query failed", request_id)


async def perform(
    source: DataSource, action: str, model: str, params: dict[str, Any]
) -> dict[str, Any]:
    """Run a read action: ``data`` (and ``count``, ``limit``, ``offset`` for lists)."""
    try:
        if action == "get":
            if "id" not in params:
                raise DataError("Missing required parameter: id")
            return {"data": await source.get_record(model, params["id"])}
        page = await source.list_records(
            model,
            limit=params.get("limit"),
            offset=params.get("offset"),
            filters=params.get("filters"),
        )
    except QueryFailed as failed:
        logger.error("MCP %s query failed for model %s: %s", action, model, failed.cause)
        raise
    return {
        "data": page.records,
        "count": len(page.records),
        "limit": page.limit,
        "offset": page.offset,
    }
