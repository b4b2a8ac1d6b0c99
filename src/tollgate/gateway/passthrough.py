"""What the gateway forwards to an upstream besides tool calls: resources, prompts,
completions, log levels and resource subscriptions (unmetered: only tool calls cost)."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import mcp_types as types
from mcp import MCPError
from mcp_types import SERVER_INFO_META_KEY
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from tollgate import __version__
from tollgate.core.crypto import Keyring
from tollgate.gateway import input_state, naming
from tollgate.gateway.catalogue import Catalogue
from tollgate.gateway.connections import UpstreamConnection, describe_failure
from tollgate.gateway.pool import ConnectionPool
from tollgate.gateway.relay import DIRECT, CallerSide, more_verbose
from tollgate.gateway.upstreams import Upstreams
from tollgate.identity.credentials import AccountKeyCaller

logger = logging.getLogger(__name__)

SERVER_INFO = {"name": "tollgate", "version": __version__}

SUBSCRIBE_SECONDS = 30.0
"""How long subscribing at an upstream may take (a new listen stream waits for its
acknowledgement) before the caller's request goes on without it."""

Reference = types.PromptReference | types.ResourceTemplateReference


def _upstream_reference(ref: Reference) -> tuple[str, Reference] | None:
    """The upstream a completion reference names, and the reference as that upstream knows
    it; None when it names no upstream."""
    if isinstance(ref, types.PromptReference):
        parts = naming.split(ref.name)
        return (parts[0], ref.model_copy(update={"name": parts[1]})) if parts else None
    parts = naming.split_resource_uri(ref.uri)
    return (parts[0], ref.model_copy(update={"uri": parts[1]})) if parts else None


def own_server_info(result: Any) -> Any:
    """Replace the upstream's server info in a result's ``_meta`` with Tollgate's."""
    meta = dict(result.meta or {})
    meta[SERVER_INFO_META_KEY] = SERVER_INFO
    result.meta = meta
    return result


def opened_state(
    keyring: Keyring, caller: AccountKeyCaller, bound_to: str, side: CallerSide
) -> str | None:
    """The upstream's state out of the caller's sealed one (INVALID_PARAMS if forged, for
    another account or item, or expired)."""
    if side.request_state is None:
        return None
    try:
        opened = input_state.unseal(
            keyring, side.request_state, account_id=caller.account_id, tool=bound_to
        )
    except input_state.InvalidRequestState as exc:
        raise MCPError(types.INVALID_PARAMS, "Invalid or expired requestState") from exc
    return opened.upstream_state


class Passthrough:
    """Forwards the requests that are not tool calls to the upstream they name."""

    def __init__(
        self, upstreams: Upstreams, catalogue: Catalogue, pool: ConnectionPool, keyring: Keyring
    ) -> None:
        self.upstreams = upstreams
        self.catalogue = catalogue
        self.pool = pool
        self.keyring = keyring

    async def resubscribe(self, upstream: str) -> None:
        """Bring an upstream's resource subscriptions in line with what callers want now
        (see :meth:`UpstreamConnection.update_subscriptions`); an upstream that offers no
        subscriptions is left alone (its resources never update)."""
        connection = self.pool.shared(upstream)
        if connection is None:
            return
        with anyio.move_on_after(SUBSCRIBE_SECONDS):
            try:
                await connection.update_subscriptions()
            except Exception as exc:
                problem = describe_failure(exc, connection.last_http_error)
                logger.warning("upstream %s kept its old subscriptions: %s", upstream, problem)

    async def set_log_level(self, upstreams: set[str] | None, level: types.LoggingLevel) -> None:
        """Ask handshake-era upstreams (all visible ones, or ``upstreams``) to log at least
        down to ``level``. Their sessions are shared, so a level is only ever lowered:
        each caller's own level is applied when messages are relayed."""
        for name, record in list(self.upstreams.items()):
            if (upstreams is not None and name not in upstreams) or not self.catalogue.is_visible(
                name
            ):
                continue
            for connection in list(record.connections()):
                await _lower_log_level(connection, level)

    async def read_resource(self, uri: str) -> types.ReadResourceResult:
        """Read a mapped resource from its upstream."""
        parts = naming.split_resource_uri(uri)
        connection = self.pool.shared(parts[0]) if parts else None
        if parts is None or connection is None or not self.catalogue.is_visible(parts[0]):
            raise MCPError(types.INVALID_PARAMS, f"Unknown resource: {uri}")
        original = parts[1]
        result = await connection.call(
            lambda client: client.read_resource(original, cache_mode="bypass")
        )
        if not isinstance(result, types.ReadResourceResult):
            raise MCPError(types.INTERNAL_ERROR, "The upstream asked for input")
        result.contents = [
            c.model_copy(update={"uri": naming.resource_uri(parts[0], str(c.uri))})
            for c in result.contents
        ]
        return own_server_info(result)  # type: ignore[no-any-return]

    async def complete(self, params: types.CompleteRequestParams) -> types.CompleteResult:
        """Completions for an argument of a prompt or resource template, from its upstream
        (none when the upstream offers no completions)."""
        found = _upstream_reference(params.ref)
        connection = self.pool.shared(found[0]) if found else None
        if found is None or connection is None or not self.catalogue.is_visible(found[0]):
            raise MCPError(types.INVALID_PARAMS, "Unknown prompt or resource template")
        original = found[1]
        context = params.context.arguments if params.context is not None else None
        argument = {"name": params.argument.name, "value": params.argument.value}
        try:
            return await connection.call(
                lambda client: client.complete(original, argument, context_arguments=context)
            )
        except MCPError as exc:
            if exc.code != types.METHOD_NOT_FOUND:
                raise
            return types.CompleteResult(completion=types.Completion(values=[]))

    async def get_prompt(
        self,
        caller: AccountKeyCaller,
        name: str,
        arguments: dict[str, str] | None,
        side: CallerSide = DIRECT,
    ) -> types.GetPromptResult | types.InputRequiredResult:
        """Get a prompt from its upstream; a 2026-07-28 caller is passed on the upstream's
        questions (input-required), as for a tool call."""
        parts = naming.split(name)
        connection = self.pool.shared(parts[0]) if parts else None
        if parts is None or connection is None or not self.catalogue.is_visible(parts[0]):
            raise MCPError(types.INVALID_PARAMS, f"Unknown prompt: {name}")
        original, bound_to = parts[1], f"prompts/get:{name}"
        upstream_state = opened_state(self.keyring, caller, bound_to, side)
        if side.relays_input and connection.era in MODERN_PROTOCOL_VERSIONS:
            result = await connection.call(
                lambda client: client.session.get_prompt(
                    original,
                    arguments,
                    input_responses=side.input_responses,
                    request_state=upstream_state,
                    allow_input_required=True,
                )
            )
        else:
            result = await connection.call(lambda client: client.get_prompt(original, arguments))
        if isinstance(result, types.InputRequiredResult):
            state = input_state.InputState(caller.account_id, bound_to, result.request_state)
            sealed = input_state.seal(self.keyring, state)
            return result.model_copy(update={"request_state": sealed})
        return own_server_info(result)  # type: ignore[no-any-return]


async def _lower_log_level(connection: UpstreamConnection, level: types.LoggingLevel) -> None:
    client = connection.client
    if (
        client is None
        or connection.era in MODERN_PROTOCOL_VERSIONS
        or client.server_capabilities.logging is None
        or not more_verbose(level, connection.log_level)
    ):
        return
    try:
        request = types.SetLevelRequest(params=types.SetLevelRequestParams(level=level))
        await client.session.send_request(request, types.EmptyResult)
        connection.log_level = level
    except MCPError as exc:
        logger.info("upstream %s refused logging/setLevel: %s", connection.spec.name, exc)
