"""What an upstream sends back towards the caller during a call: log messages, and its
requests for a model's answer (sampling), the user's input (elicitation) or the client's
roots (``roots/list``).

Upstream sessions are shared by every caller, so the SDK's session-wide callbacks cannot
know whom a message is for. The caller's request is put in a context variable before the
upstream is called; the SDK's HTTP transport delivers each message of that call in the
context of the task that sent the request, so the callbacks find the right caller. A
message that arrives outside any call (on an upstream's standalone stream, or from a stdio
upstream) has no caller: a log line is dropped, a request refused.

A caller on the 2025 handshake era is asked on its request's own stream. A 2026-07-28
caller cannot be sent a request during a call (that era asks through input-required
results); Tollgate refuses such a request to the upstream with a clear error.
"""

from __future__ import annotations

import contextvars
import logging
from dataclasses import dataclass
from typing import Any, get_args

import mcp_types as types
from mcp import MCPError
from mcp.client.session import ClientRequestContext
from mcp.server import ServerRequestContext
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.message import ServerMessageMetadata
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

logger = logging.getLogger(__name__)

LOG_LEVELS: tuple[types.LoggingLevel, ...] = get_args(types.LoggingLevel)
"""From least to most severe, as the protocol orders them."""

LOG_LEVEL_STATE_KEY = "tollgate/log-level"
"""Where a handshake-era caller's ``logging/setLevel`` choice is kept on its connection."""


@dataclass(frozen=True)
class CallerRequest:
    """The caller's request an upstream call is made for."""

    ctx: ServerRequestContext[Any]

    @property
    def modern(self) -> bool:
        """Whether the caller speaks 2026-07-28 (no requests to it during a call)."""
        return self.ctx.protocol_version in MODERN_PROTOCOL_VERSIONS

    @property
    def capabilities(self) -> types.ClientCapabilities | None:
        return self.ctx.session.client_capabilities

    def can_be_asked(self) -> bool:
        """Whether a handshake-era caller declared sampling, elicitation or roots: its calls
        go to upstreams over a handshake-era session too, where an upstream may push
        requests."""
        capabilities = self.capabilities
        return (
            not self.modern
            and capabilities is not None
            and (
                capabilities.sampling is not None
                or capabilities.elicitation is not None
                or capabilities.roots is not None
            )
        )

    def log_level(self) -> types.LoggingLevel | None:
        """The least severe level the caller asked to receive; None if it never said."""
        if self.modern:
            wanted = (self.ctx.meta or {}).get(types.LOG_LEVEL_META_KEY)
            return wanted if wanted in LOG_LEVELS else None
        return self.ctx.session._connection.state.get(LOG_LEVEL_STATE_KEY)


current_caller_request: contextvars.ContextVar[CallerRequest | None] = contextvars.ContextVar(
    "tollgate_caller_request", default=None
)


def severe_enough(level: types.LoggingLevel, wanted: types.LoggingLevel | None) -> bool:
    """Whether a message at ``level`` passes a threshold of ``wanted`` (None: everything)."""
    return wanted is None or LOG_LEVELS.index(level) >= LOG_LEVELS.index(wanted)


def more_verbose(level: types.LoggingLevel, than: types.LoggingLevel | None) -> bool:
    """Whether ``level`` lets through more than ``than`` does (None: the upstream's default)."""
    return than is None or LOG_LEVELS.index(level) < LOG_LEVELS.index(than)


def set_caller_log_level(ctx: ServerRequestContext[Any], level: types.LoggingLevel) -> None:
    """Remember a handshake-era caller's ``logging/setLevel`` for its session."""
    ctx.session._connection.state[LOG_LEVEL_STATE_KEY] = level


async def relay_log(params: types.LoggingMessageNotificationParams) -> None:
    """Pass an upstream's log message on to the caller of the call it belongs to (a
    2026-07-28 caller gets only what its request opted in to)."""
    caller = current_caller_request.get()
    if caller is None:
        return
    wanted = caller.log_level()
    if (caller.modern and wanted is None) or not severe_enough(params.level, wanted):
        return
    await caller.ctx.session.send_notification(
        types.LoggingMessageNotification(params=params), related_request_id=caller.ctx.request_id
    )


def _refusal(message: str) -> types.ErrorData:
    return types.ErrorData(code=types.INVALID_REQUEST, message=message)


def _askable(caller: CallerRequest | None, what: str) -> types.ErrorData | CallerRequest:
    if caller is None:
        return _refusal(f"Tollgate relays {what} only during a tool call made for a client")
    if caller.modern or not caller.ctx.session.can_send_request:
        return _refusal(f"The calling client cannot be sent {what} requests during this call")
    return caller


async def _ask(caller: CallerRequest, request: Any, result_type: Any) -> Any:
    metadata = ServerMessageMetadata(related_request_id=caller.ctx.request_id)
    try:
        return await caller.ctx.session.send_request(request, result_type, metadata=metadata)
    except MCPError as exc:
        return exc.error


async def relay_sampling(
    _: ClientRequestContext, params: types.CreateMessageRequestParams
) -> types.CreateMessageResult | types.CreateMessageResultWithTools | types.ErrorData:
    """Ask the caller's client for the model answer an upstream wants."""
    caller = _askable(current_caller_request.get(), "sampling")
    if isinstance(caller, types.ErrorData):
        return caller
    sampling = caller.capabilities.sampling if caller.capabilities else None
    if sampling is None:
        return _refusal("The calling client does not support sampling")
    if (params.tools or params.tool_choice) and sampling.tools is None:
        return _refusal("The calling client does not support tools in sampling")
    with_tools = bool(params.tools or params.tool_choice)
    result_type = types.CreateMessageResultWithTools if with_tools else types.CreateMessageResult
    answer: types.CreateMessageResult | types.CreateMessageResultWithTools | types.ErrorData
    answer = await _ask(caller, types.CreateMessageRequest(params=params), result_type)
    return answer


def _elicitation_supported(capabilities: types.ClientCapabilities | None, mode: str) -> bool:
    elicitation = capabilities.elicitation if capabilities else None
    if elicitation is None:
        return False
    if mode == "url":
        return elicitation.url is not None
    return elicitation.form is not None or elicitation.url is None  # bare {} means form


async def relay_elicitation(
    _: ClientRequestContext, params: types.ElicitRequestParams
) -> types.ElicitResult | types.ErrorData:
    """Ask the caller's user for the input an upstream wants (form or URL mode)."""
    caller = _askable(current_caller_request.get(), "elicitation")
    if isinstance(caller, types.ErrorData):
        return caller
    mode = "url" if isinstance(params, types.ElicitRequestURLParams) else "form"
    if not _elicitation_supported(caller.capabilities, mode):
        return _refusal(f"The calling client does not support {mode} elicitation")
    answer: types.ElicitResult | types.ErrorData
    answer = await _ask(caller, types.ElicitRequest(params=params), types.ElicitResult)
    return answer


async def relay_roots(_: ClientRequestContext) -> types.ListRootsResult | types.ErrorData:
    """Ask the caller's client for its roots, which an upstream wants."""
    caller = _askable(current_caller_request.get(), "roots")
    if isinstance(caller, types.ErrorData):
        return caller
    if caller.capabilities is None or caller.capabilities.roots is None:
        return _refusal("The calling client does not support roots")
    answer: types.ListRootsResult | types.ErrorData
    answer = await _ask(caller, types.ListRootsRequest(), types.ListRootsResult)
    return answer


@dataclass(frozen=True)
class CallerSide:
    """How the caller made its request: what may reach it while the upstream works."""

    protocol_version: str | None = None
    session_id: str | None = None
    progress: ProgressFnT | None = None
    """Relays the upstream's progress notifications to the caller (who asked for them)."""
    log_level: types.LoggingLevel | None = None
    """The least severe log level the caller asked for (a 2026-07-28 upstream logs only
    when a request asks it to)."""
    same_era: bool = False
    """A handshake-era caller that may be asked for input: served over a handshake-era
    upstream session (an upstream of both eras pushes its requests only there)."""
    relays_input: bool = False
    """A 2026-07-28 caller: an upstream's input-required result is passed on to it."""
    input_responses: types.InputResponses | None = None
    request_state: str | None = None
    """The caller's answers to an earlier input-required result, and the state it came with."""


DIRECT = CallerSide()
