"""The gateway at run time: upstream sessions, the catalogue, and the metered call path.

``tools/call``: rate limit per key (counted in memory) -> reserve the credits from the
process's hold (in memory) -> call the upstream over a pooled session -> record and charge
the call (a group commit shared with concurrent calls) before the answer is released -> tell
the observers. A call the client cancels is recorded at once as refunded and ``cancelled``.
Each result carries ``_meta["tollgate/overhead_ms"]``: the time Tollgate spent on the call
outside the upstream.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import anyio
import mcp_types as types
from mcp import Client, MCPError
from mcp_types import SERVER_INFO_META_KEY
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from tollgate.accounts import calls
from tollgate.accounts.meter import CallMeter
from tollgate.broker import leases
from tollgate.core.database import transaction
from tollgate.core.errors import Forbidden, InsufficientCredits, NotFound
from tollgate.core.events import Observers, ToolCallEvent
from tollgate.core.ratelimit import RateLimiter
from tollgate.core.runtime import Runtime
from tollgate.gateway import input_state, naming, servers, service
from tollgate.gateway.addresses import gateway_id
from tollgate.gateway.catalogue import Catalogue, ToolEntry, UpstreamListing, UpstreamPolicy
from tollgate.gateway.connections import ConnectionSpec, UpstreamConnection
from tollgate.gateway.marking import CallerServices, for_caller
from tollgate.gateway.models import AuthMode, Upstream, UpstreamState
from tollgate.gateway.passthrough import SERVER_INFO, Passthrough, opened_state, own_server_info
from tollgate.gateway.pool import ConnectionPool
from tollgate.gateway.relay import DIRECT, CallerSide
from tollgate.gateway.upstreams import NO_AUTH, UpstreamAuth, Upstreams
from tollgate.gateway.views import ServerSpec, View
from tollgate.gateway.watch import ResourceWatch
from tollgate.identity.credentials import AccountKeyCaller
from tollgate.identity.models import User

logger = logging.getLogger(__name__)

RATE_WINDOW_SECONDS = 60
"""Rate limits count calls per key in one-minute windows."""


OVERHEAD_META_KEY = "tollgate/overhead_ms"
"""Result ``_meta`` field with Tollgate's own time on the call (upstream time excluded)."""

Notifier = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class ToolCall:
    """One routed tool call on its way upstream."""

    caller: AccountKeyCaller
    entry: ToolEntry
    name: str
    arguments: dict[str, Any]
    request_id: str
    started: float
    """``time.perf_counter()`` when the gateway took the call."""
    side: CallerSide = DIRECT
    upstream_state: str | None = None
    """The upstream's own request state, out of the caller's sealed one."""


def changed_kinds(before: UpstreamListing, after: UpstreamListing) -> list[str]:
    """Which lists (``tools``, ``resources``, ``prompts``) differ between two listings of an
    upstream: what its clients are told changed."""
    kinds = []
    if before.tools != after.tools:
        kinds.append("tools")
    if (before.resources, before.templates) != (after.resources, after.templates):
        kinds.append("resources")
    if before.prompts != after.prompts:
        kinds.append("prompts")
    return kinds


class MissingCredential(Exception):
    """The caller has no credential for the service an upstream needs."""

    def __init__(self, service: str) -> None:
        super().__init__(service)
        self.service = service


def tool_error(text: str, **meta: Any) -> types.CallToolResult:
    """A tool result flagged as an error, with Tollgate's details in ``_meta``."""
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)],
        is_error=True,
        _meta={SERVER_INFO_META_KEY: SERVER_INFO, "tollgate": meta} if meta else None,
    )


def _refunded(message: str, code: str) -> types.CallToolResult:
    return tool_error(f"{message}; the credits were refunded", code=code, backend_error=True)


def render_header(template: str, credentials: dict[str, Any]) -> tuple[str, str]:
    """``Authorization: Bearer {access_token}`` filled from a credential."""
    name, _, value = template.partition(":")
    try:
        rendered = value.strip().format_map({k: str(v) for k, v in credentials.items()})
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"the credential has no field for {template!r}") from exc
    if any(c in rendered for c in "\r\n\x00"):
        raise ValueError("credential values cannot contain line breaks")
    return name.strip(), rendered


class Gateway:
    """Everything ``/mcp`` needs in one process."""

    def __init__(self, runtime: Runtime, meter: CallMeter) -> None:
        self.runtime = runtime
        self.meter = meter
        self.limiter = RateLimiter(runtime.cache)
        self.upstreams = Upstreams()
        self.catalogue = Catalogue(self.upstreams)
        self.pool = ConnectionPool(
            self.upstreams,
            self._on_listing,
            self._on_state,
            own_gateway_id=gateway_id(runtime.settings),
            on_resource_updated=self._on_resource_updated,
            resource_subscriptions=self._wanted_resources,
        )
        self.observers = Observers()
        self._notifiers: list[Notifier] = []
        self.passthrough = Passthrough(self.upstreams, self.catalogue, self.pool, runtime.keyring)
        """Resources, prompts, completions, log levels and subscriptions."""
        self.watch = ResourceWatch(self.passthrough.resubscribe)
        """Callers' resource subscriptions (both eras), subscribed once at each upstream."""
        self.services = CallerServices(self._services_of)
        self.root = View(self.catalogue)
        """``/mcp``: every tool, resource and prompt, under gateway names."""
        self._views: dict[str, View] = {}

    def view(self, server: str) -> View | None:
        """What the virtual server ``server`` serves now; None if there is no such enabled
        server."""
        found = self._views.get(server)
        return found if found is not None and found.spec and found.spec.enabled else None

    def servers(self) -> list[ServerSpec]:
        """Every virtual server this process serves, by name."""
        return [v.spec for _, v in sorted(self._views.items()) if v.spec is not None]

    def _apply_servers(self, specs: list[ServerSpec]) -> bool:
        """Serve exactly ``specs``; whether anything changed."""
        wanted = {spec.name: spec for spec in specs}
        current = {name: view.spec for name, view in self._views.items()}
        if wanted == current:
            return False
        self._views = {
            name: self._views[name] if current.get(name) == spec else View(self.catalogue, spec)
            for name, spec in wanted.items()
        }
        return True

    def on_change(self, notifier: Notifier) -> None:
        """Call ``notifier(kind)`` when the tools, resources or prompts offered change."""
        self._notifiers.append(notifier)

    async def _notify(self, kind: str) -> None:
        for notifier in self._notifiers:
            try:
                await notifier(kind)
            except Exception:
                logger.exception("list-changed notification failed")

    async def sync(self) -> None:
        """Bring sessions and policies in line with the registered upstreams, and tell
        clients when that changed the tools offered (an upstream disabled, removed, or its
        tool lists changed)."""
        offered = self.catalogue.tools_result().tools
        async with self.runtime.sessions() as session:
            rows = list(await service.list_all(session))
            virtual = [servers.spec_of(row) for row in await servers.list_all(session)]
        seen = set()
        for row in rows:
            seen.add(row.name)
            self._apply(row)
        gone = [
            record.name
            for record in self.upstreams.values()
            if record.spec is not None and not record.builtin and record.name not in seen
        ]
        for name in gone:
            self.forget(name)
        if self._apply_servers(virtual):
            for kind in ("tools", "resources", "prompts"):
                await self._notify(kind)
        elif self.catalogue.tools_result().tools != offered:
            await self._notify("tools")

    def _apply(self, row: Upstream) -> None:
        spec = service.connection_spec(self.runtime.keyring, row)
        self.catalogue.set_policy(service.policy(row))
        record = self.upstreams.record(row.name)
        record.auth = UpstreamAuth(row.auth_mode, row.broker_service, row.broker_header)
        if record.listing_digest is None and row.catalogue:
            self.catalogue.set_listing(row.name, UpstreamListing.from_json(row.catalogue))
            if row.state == UpstreamState.UP and row.enabled:
                # Serve the stored catalogue while this process connects (a restart would
                # otherwise hide the tools); calls wait briefly for the session.
                self.catalogue.set_available(row.name, True)
        record.spec = spec
        if not row.enabled:
            self.pool.remove(row.name)
            self.catalogue.set_available(row.name, False)
            return
        before = self.pool.shared(row.name)
        if self.pool.ensure(spec) is not before:
            record.first_contact = anyio.Event()

    def add_builtin(self, name: str, server: Any, price: int) -> None:
        """Serve an in-process MCP server as the upstream ``name`` (not stored, not editable)."""
        record = self.upstreams.record(name)
        record.builtin = True
        self.catalogue.set_policy(UpstreamPolicy(name=name, price=price))
        record.auth = NO_AUTH
        record.spec = ConnectionSpec(name=name, transport="inproc", server=server)
        self.pool.ensure(record.spec)

    def forget(self, name: str) -> None:
        """Close an upstream's sessions and drop it from the catalogue."""
        self.pool.remove(name)
        self.catalogue.remove(name)
        self.upstreams.pop(name, None)

    async def _on_listing(self, name: str, listing: UpstreamListing) -> None:
        data = listing.to_json()
        digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
        record = self.upstreams.record(name)
        if record.listing_digest == digest:
            return
        record.listing_digest = digest
        before = self.catalogue.listing(name)
        self.catalogue.set_listing(name, listing)
        try:
            async with transaction(self.runtime.sessions) as session:
                await service.save_listing(session, name, listing)
        except NotFound:
            return
        for kind in changed_kinds(before, listing):
            await self._notify(kind)

    async def _on_state(self, name: str, up: bool, error: str | None, era: str | None) -> None:
        was_visible = self.catalogue.is_visible(name)
        self.catalogue.set_available(name, up)
        try:
            async with transaction(self.runtime.sessions) as session:
                await service.save_state(session, name, up, error, era)
        finally:  # whoever waits for the first contact reads the state saved
            record = self.upstreams.get(name)
            if record is not None and record.first_contact is not None:
                record.first_contact.set()
        if was_visible != self.catalogue.is_visible(name):
            await self._notify("tools")

    async def first_contact(self, name: str) -> None:
        """Wait until a newly started upstream session connected or failed (call it inside
        a deadline: ``anyio.move_on_after``)."""
        record = self.upstreams.get(name)
        if record is not None and record.first_contact is not None:
            await record.first_contact.wait()

    def refused_as_self(self, name: str) -> bool:
        """Whether the upstream's session found it to be this Tollgate (never served)."""
        connection = self.pool.shared(name)
        return connection is not None and connection.refused is not None

    async def refresh(self, name: str) -> UpstreamListing:
        """Read an upstream's catalogue now."""
        connection = self.pool.shared(name)
        if connection is None or not await connection.wait_ready():
            raise MCPError(types.INTERNAL_ERROR, f"upstream {name} is not connected")
        return await connection.refresh()

    async def call_tool(
        self,
        caller: AccountKeyCaller,
        name: str,
        arguments: dict[str, Any] | None,
        side: CallerSide = DIRECT,
    ) -> types.CallToolResult | types.InputRequiredResult:
        """Route, meter and forward one tool call; ``side`` says what of the upstream's
        work during the call (progress, logs, requests for input) may reach the caller.

        A call that ends by asking the caller for input is neither charged nor recorded:
        the caller's retry with the answers is the call that counts."""
        started = time.perf_counter()
        entry = self.catalogue.tool(name)
        if entry is None:
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {name}")
        upstream_state = opened_state(self.runtime.keyring, caller, name, side)
        limited = self.rate_limited(caller)
        if limited is not None:
            return limited
        try:
            connection = await self.connection_for(entry, caller)
        except MissingCredential as missing:
            return tool_error(
                f"No {missing.service} credential: add one in Tollgate to use {name}",
                code="missing_credential",
                service=missing.service,
            )
        if side.same_era and connection.era in MODERN_PROTOCOL_VERSIONS:
            connection = self.pool.handshake_twin(connection.spec)
        request_id = uuid.uuid4().hex
        refusal = await self.reserve(caller, entry, name, request_id)
        if refusal is not None:
            return refusal
        call = ToolCall(
            caller, entry, name, arguments or {}, request_id, started, side, upstream_state
        )
        return await self._forward(call, connection)

    def rate_limited(self, caller: AccountKeyCaller) -> types.CallToolResult | None:
        """The refusal of a call past the key's limit, saying when to retry; None if allowed."""
        limit = self.runtime.settings.key_rate_limit_per_minute
        retry_after = self.limiter.hit(f"mcp:{caller.account_id}", limit, RATE_WINDOW_SECONDS)
        if retry_after is None:
            return None
        return tool_error(
            f"Rate limit exceeded: at most {limit} calls a minute with this key; "
            f"retry in {retry_after} s",
            code="rate_limited",
            retry_after_seconds=retry_after,
            limit_per_minute=limit,
        )

    async def reserve(
        self, caller: AccountKeyCaller, entry: ToolEntry, name: str, request_id: str
    ) -> types.CallToolResult | None:
        """Reserve the call's credits; the refusal to answer when the account cannot pay."""
        try:
            await self.meter.reserve(
                caller.account_id,
                request_id=request_id,
                tool_name=name,
                upstream=entry.upstream,
                cost=entry.price,
            )
        except InsufficientCredits as refused:
            return tool_error(refused.message, code=refused.code, **refused.extra)
        except (Forbidden, NotFound) as refused:
            return tool_error(refused.message, code=refused.code)
        return None

    async def _forward(
        self, call: ToolCall, connection: UpstreamConnection
    ) -> types.CallToolResult | types.InputRequiredResult:
        started = time.perf_counter()
        try:
            result, error_code = await self._call_upstream(call, connection)
        except anyio.get_cancelled_exc_class():
            # The client cancelled (or went away): it never gets an answer, so the call is
            # recorded as refunded now.
            with anyio.CancelScope(shield=True):
                await self.settle(call, started, calls.CANCELLED_ERROR_CODE, cancelled=True)
            raise
        upstream_seconds = time.perf_counter() - started
        if isinstance(result, types.InputRequiredResult):
            self.meter.release(call.request_id)
            return self.questions_for(call, result)
        with anyio.CancelScope(shield=True):  # the outcome is durable before the answer
            await self.settle(call, started, error_code)
        overhead = time.perf_counter() - call.started - upstream_seconds
        result.meta = {**(result.meta or {}), OVERHEAD_META_KEY: round(overhead * 1000, 3)}
        return result

    def questions_for(
        self, call: ToolCall, result: types.InputRequiredResult
    ) -> types.InputRequiredResult:
        """The upstream's questions for the caller, its state sealed into Tollgate's."""
        sealed = self.seal_state(call, result.request_state)
        return result.model_copy(update={"request_state": sealed})

    def seal_state(self, call: ToolCall, upstream_state: str | None) -> str:
        """The ``requestState`` a caller gets for the upstream's own: bound to its account
        and to the tool."""
        state = input_state.InputState(call.caller.account_id, call.name, upstream_state)
        return input_state.seal(self.runtime.keyring, state)

    async def settle(
        self, call: ToolCall, started: float, error_code: str | None, *, cancelled: bool = False
    ) -> None:
        """Record and charge the call (durable before the answer is released), then tell
        the observers."""
        latency_ms = (time.perf_counter() - started) * 1000
        backend = error_code is not None and error_code != "tool_error" and not cancelled
        success = error_code is None
        outcome = calls.CallOutcome(
            request_id=call.request_id,
            success=success,
            is_backend_error=backend,
            error_code=error_code,
            latency_ms=round(latency_ms, 3),
            cancelled=cancelled,
        )
        if not await self.meter.settle_outcome(outcome):
            logger.error("call %s answered without its record (not charged)", call.request_id)
        self.observers.emit(
            ToolCallEvent(
                request_id=call.request_id,
                account_id=call.caller.account_id,
                user_id=call.caller.user_id,
                upstream=call.entry.upstream,
                tool=call.name,
                credits=0 if outcome.refunded else call.entry.price,
                success=success,
                is_backend_error=backend,
                error_code=error_code,
                latency_ms=latency_ms,
                protocol_version=call.side.protocol_version,
                session_id=call.side.session_id,
            )
        )

    async def _call_upstream(
        self, call: ToolCall, connection: UpstreamConnection
    ) -> tuple[types.CallToolResult | types.InputRequiredResult, str | None]:
        """The upstream's answer and its error code: None, ``tool_error`` (charged), or a
        backend failure (refunded); or its questions for a caller that can be asked."""
        upstream = call.entry.upstream
        try:
            result = await connection.call(lambda client: _send_call(client, call, connection))
        except MCPError as exc:
            code = "upstream_timeout" if exc.code == types.REQUEST_TIMEOUT else "upstream_error"
            return _refunded(f"Upstream {upstream} failed: {exc.message}", code), code
        except Exception as exc:
            logger.exception("call to %s failed", call.name)
            return _refunded(
                f"Upstream {upstream} failed ({type(exc).__name__})", "gateway_error"
            ), ("gateway_error")
        if isinstance(result, types.InputRequiredResult):
            return result, None
        own_server_info(result)
        return result, "tool_error" if result.is_error else None

    async def connection_for(
        self, entry: ToolEntry, caller: AccountKeyCaller
    ) -> UpstreamConnection:
        """The session a call of ``caller`` to ``entry`` goes over: the upstream's shared
        one, or the one carrying the caller's own credential (MissingCredential)."""
        record = self.upstreams.get(entry.upstream)
        base = record.spec if record is not None else None
        shared = record.connection if record is not None else None
        if record is None or base is None or shared is None:
            raise MCPError(types.INTERNAL_ERROR, f"upstream {entry.upstream} is not available")
        auth = record.auth
        if auth.mode != AuthMode.BROKER or not auth.service or not auth.header:
            return shared
        credentials = await self._user_credentials(caller.user_id, auth.service)
        if credentials is None:
            raise MissingCredential(auth.service)
        try:
            header = render_header(auth.header, credentials)
        except ValueError as exc:
            raise MissingCredential(auth.service) from exc
        spec = replace(base, headers=(*base.headers, header))
        fingerprint = hashlib.sha256(header[1].encode()).hexdigest()
        return self.pool.for_credential(spec, fingerprint)

    async def _user_credentials(self, user_id: int, service_name: str) -> dict[str, Any] | None:
        async with self.runtime.sessions() as session:
            return await leases.credential_of(session, self.runtime.keyring, user_id, service_name)

    def needed_service(self, view: View, shown: str) -> str | None:
        """The broker service the tool a view serves as ``shown`` needs, if any."""
        name = view.tool_name(shown)
        entry = self.catalogue.tool(name) if name else None
        record = self.upstreams.get(entry.upstream) if entry else None
        if record is None or record.auth.mode != AuthMode.BROKER:
            return None
        return record.auth.service

    def has_broker_tools(self) -> bool:
        """Whether any upstream calls with the user's own credential (lists need marking)."""
        return any(r.auth.mode == AuthMode.BROKER for r in self.upstreams.values())

    async def tools_for(self, caller: AccountKeyCaller, view: View) -> types.ListToolsResult:
        """What ``view`` lists for ``caller``: tools needing a credential the caller has not
        connected are marked, or hidden by ``TOLLGATE_HIDE_TOOLS_WITHOUT_CREDENTIAL``."""
        result = view.tools_result()
        if not self.has_broker_tools():
            return result
        connected = await self.services.of(caller.user_id)
        hide = self.runtime.settings.hide_tools_without_credential
        return for_caller(result, lambda n: self.needed_service(view, n), connected, hide=hide)

    async def _on_resource_updated(self, upstream: str, uri: str) -> None:
        await self.watch.updated(naming.resource_uri(upstream, uri))

    def _wanted_resources(self, upstream: str) -> frozenset[str]:
        return self.watch.wanted(upstream)

    async def _services_of(self, user_id: int) -> frozenset[str]:
        async with self.runtime.sessions() as session:
            user = await session.get(User, user_id)
            return (
                frozenset(await leases.available_services(session, user)) if user else frozenset()
            )


async def _send_call(
    client: Client, call: ToolCall, connection: UpstreamConnection
) -> types.CallToolResult | types.InputRequiredResult:
    """Send the call upstream. For a caller that can answer input-required results itself
    (2026-07-28), the upstream's are passed on; otherwise the SDK client answers them
    through the relay (asking a handshake-era caller)."""
    side, modern = call.side, connection.era in MODERN_PROTOCOL_VERSIONS
    meta: dict[str, Any] | None = None
    if side.log_level is not None and modern:
        meta = {types.LOG_LEVEL_META_KEY: side.log_level}
    if side.relays_input and modern:
        return await client.session.call_tool(
            call.entry.original,
            call.arguments,
            read_timeout_seconds=connection.spec.timeout,
            progress_callback=side.progress,
            input_responses=side.input_responses,
            request_state=call.upstream_state,
            meta=meta,  # type: ignore[arg-type]
            allow_input_required=True,
        )
    return await client.call_tool(
        call.entry.original,
        call.arguments,
        read_timeout_seconds=connection.spec.timeout,
        progress_callback=side.progress,
        meta=meta,  # type: ignore[arg-type]
    )
