"""Pagination of the lists Tollgate serves on ``/mcp`` (tools, resources, resource templates,
prompts): pages of ``TOLLGATE_LIST_PAGE_SIZE`` items behind opaque cursors."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import TypeVar

import mcp_types as types
from mcp import MCPError

T = TypeVar("T")


def page(
    items: Sequence[T], params: types.PaginatedRequestParams | None, size: int, kind: str
) -> tuple[list[T], str | None]:
    """The page of ``items`` the request's cursor names, and the cursor of the next one (None
    on the last page). A cursor that is not one of ours is INVALID_PARAMS."""
    start = _start(params.cursor if params is not None else None, kind)
    end = start + size
    return list(items[start:end]), _cursor(kind, end) if end < len(items) else None


def _cursor(kind: str, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{offset}".encode()).decode()


def _start(cursor: str | None, kind: str) -> int:
    if not cursor:
        return 0
    try:
        named, _, offset = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        start = int(offset)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        start = -1
        named = ""
    if named != kind or start < 0:
        raise MCPError(types.INVALID_PARAMS, f"Invalid cursor for {kind}")
    return start
