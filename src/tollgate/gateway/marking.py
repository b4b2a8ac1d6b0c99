"""Each caller's ``tools/list``: a tool of an upstream that calls with the user's own
credential (broker auth) is marked when the caller has not connected that credential, or
left out (``TOLLGATE_HIDE_TOOLS_WITHOUT_CREDENTIAL``), instead of failing when called."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import mcp_types as types

CREDENTIAL_META_KEY = "tollgate/credential"
"""Tool ``_meta`` field naming the service a marked tool needs: ``{"service", "connected"}``."""

SERVICES_TTL_SECONDS = 10.0
"""How long a process trusts what it read of a user's connected services (lists only: a
call always resolves the credential afresh)."""

ServicesOf = Callable[[int], Awaitable[frozenset[str]]]


class CallerServices:
    """The services each user has a credential for, read at most every
    :data:`SERVICES_TTL_SECONDS`."""

    def __init__(self, read: ServicesOf) -> None:
        self._read = read
        self._known: dict[int, tuple[float, frozenset[str]]] = {}

    async def of(self, user_id: int) -> frozenset[str]:
        """The services ``user_id`` can get a credential for."""
        now = time.monotonic()
        known = self._known.get(user_id)
        if known is not None and known[0] > now:
            return known[1]
        found = await self._read(user_id)
        self._known[user_id] = (now + SERVICES_TTL_SECONDS, found)
        return found


def marked(tool: types.Tool, service: str) -> types.Tool:
    """``tool`` as a caller without a ``service`` credential sees it."""
    note = f"[Needs your {service} credential: connect it in Tollgate to use this tool.]"
    description = f"{tool.description}\n\n{note}" if tool.description else note
    meta = {**(tool.meta or {}), CREDENTIAL_META_KEY: {"service": service, "connected": False}}
    return tool.model_copy(update={"description": description, "meta": meta})


def for_caller(
    result: types.ListToolsResult,
    needs: Callable[[str], str | None],
    connected: frozenset[str],
    *,
    hide: bool,
) -> types.ListToolsResult:
    """``result`` with the tools whose needed service (``needs(name)``) the caller lacks
    marked, or left out when ``hide``; the same object when nothing changes."""
    tools: list[types.Tool] = []
    changed = False
    for tool in result.tools:
        service = needs(tool.name)
        if service is None or service in connected:
            tools.append(tool)
            continue
        changed = True
        if not hide:
            tools.append(marked(tool, service))
    return types.ListToolsResult(tools=tools) if changed else result
