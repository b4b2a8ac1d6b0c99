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


@dataclass(frozen=True)
class ReadRequest:
    """A well-formed read request (``list``, ``get`` or ``query``), checked but not yet run."""

    id: str | int
    action: str
    model: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Answer:
    """The reply to a read, and whether it failed on the server's side (not the request's)."""

    body: dict[str, Any]
    failed: bool = False

    @property
    def ok(self) -> bool:
        """Whether the read returned data."""
        return self.body.get("status") == "ok"


Checked = tuple[dict[str, Any] | None, ReadRequest | dict[str, Any]]
"""The decoded message (None when it is not one), and the read to run or the refusal."""


class Handler:
    """Answers requests against one data source."""

    def __init__(self, source: DataSource, *, readonly: bool) -> None:
        self.source = source
        self.readonly = readonly

    def check_text(self, text: str | bytes) -> Checked:
        """Decode and check one frame: the read it asks for, or the error reply."""
        size = len(text.encode(errors="surrogatepass")) if isinstance(text, str) else len(text)
        if size > MAX_FRAME_BYTES:
            return None, error(f"Message too large: at most {MAX_FRAME_BYTES} bytes")
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):
            return None, error("Invalid JSON")
        if not isinstance(message, dict):
            return None, error("Invalid request: expected a JSON object")
        return message, self.check(message)

    async def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        """The response to one decoded request."""
        checked = self.check(message)
        if isinstance(checked, ReadRequest):
            return (await self.read(checked)).body
        return checked

    def check(self, message: dict[str, Any]) -> ReadRequest | dict[str, Any]:
        """The read a decoded request asks for, or the error reply refusing it."""
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
        return ReadRequest(request_id, action, model, params)

    async def read(self, request: ReadRequest) -> Answer:
        """Run a checked read: its data, the source's refusal, or a server-side failure."""
        try:
            data = await perform(self.source, request.action, request.model, request.params)
        except DataError as refused:
            return Answer(error(str(refused), request.id))
        except Exception:
            logger.exception("MCP %s query failed for model %s", request.action, request.model)
            return Answer(error("Query failed", request.id), failed=True)
        return Answer({"id": request.id, "status": "ok", **data})


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
