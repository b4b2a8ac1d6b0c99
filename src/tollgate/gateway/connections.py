"""Long-lived sessions to upstream MCP servers.

Each connection is owned by one task (the SDK's clients hold task groups that must be left
by the task that entered them); any other task may call through it concurrently. The owner
connects (detecting the upstream's protocol era), reads its catalogue, listens for
list-changed events, re-reads the catalogue periodically as a health check, and reconnects
with backoff when the session breaks (a stdio upstream's process is started again).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import httpx2
import mcp_types as types
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ResourceUpdated, ServerEvent
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from tollgate.gateway.addresses import reported_gateway_id
from tollgate.gateway.catalogue import UpstreamListing
from tollgate.gateway.guards import UpstreamIsSelf
from tollgate.gateway.relay import relay_elicitation, relay_log, relay_roots, relay_sampling

logger = logging.getLogger(__name__)

T = TypeVar("T")

CONNECT_TIMEOUT_SECONDS = 15.0
"""How long connecting may take before the attempt counts as failed (the HTTP client's
connect timeout: the SDK's task groups cannot sit inside an outer deadline scope)."""

READY_WAIT_SECONDS = 5.0
"""How long a call waits for a (re)connecting upstream before failing as a backend error."""

MAX_LIST_PAGES = 1000
"""Pages read of one upstream list at most (an upstream repeating its cursor must not hang
the refresh)."""

BACKOFF_INITIAL_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
"""Reconnection waits double from the initial value up to this cap."""

CATALOGUE_TIMEOUT_SECONDS = 30.0
"""The handshake and catalogue reads may take this long, whatever a tool call's timeout is
(an upstream with a tight per-call timeout still connects on a slow day)."""

REFRESH_INTERVAL_SECONDS = 60.0
"""The catalogue is re-read this often: it catches missed notifications and dead upstreams."""


@dataclass(frozen=True)
class ConnectionSpec:
    """How to reach one upstream, with the headers (or environment) to send."""

    name: str
    transport: str
    url: str | None = None
    command: str | None = None
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = 30.0
    mode: str = "auto"
    """The protocol era to speak: ``auto`` (the newest both sides know) or ``legacy``."""
    server: Any = field(default=None, compare=False)
    """An in-process MCP server (transport ``inproc``), for Tollgate's built-in upstreams."""


ListingCallback = Callable[[str, UpstreamListing], Awaitable[None]]
UpdatedCallback = Callable[[str, str], Awaitable[None]]
"""Told ``(upstream, original URI)`` when an upstream says a subscribed resource changed."""
WantedCallback = Callable[[str], frozenset[str]]
"""Says which resources of an upstream (its own URIs) callers are subscribed to now."""
StateCallback = Callable[[str, bool, str | None, str | None], Awaitable[None]]


@dataclass
class _Waiters:
    stop: anyio.Event = field(default_factory=anyio.Event)
    broken: anyio.Event = field(default_factory=anyio.Event)
    ready: anyio.Event = field(default_factory=anyio.Event)
    closed: anyio.Event = field(default_factory=anyio.Event)


STDIO_INHERITED_ENV = ("PATH", "HOME", "LANG", "LANGUAGE", "TMPDIR", "TZ", "USER", "LOGNAME")
"""What a stdio upstream's process inherits from Tollgate's environment (plus ``LC_*``):
nothing secret. Everything else it needs is declared in its registration's ``env``."""


def stdio_environment(declared: dict[str, str]) -> dict[str, str]:
    """The whole environment of a stdio upstream's process: a few harmless variables of
    ours, then what its registration declares."""
    env = {
        name: value
        for name, value in os.environ.items()
        if (name in STDIO_INHERITED_ENV or name.startswith("LC_")) and not value.startswith("()")
    }
    return env | declared


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def describe_failure(exc: BaseException, status: int | None = None) -> str:
    """What went wrong, in our words: never the upstream's own text (an address reached by
    mistake must not be read back through our errors), only its HTTP status."""
    exc = _leaf(exc)
    if isinstance(exc, UpstreamIsSelf):
        return exc.message
    if status is not None:
        return f"the upstream answered HTTP {status}"
    if isinstance(exc, httpx2.TimeoutException | TimeoutError):
        return f"no answer from the upstream in time ({type(exc).__name__})"
    if isinstance(exc, httpx2.TransportError):
        return f"cannot reach the upstream ({type(exc).__name__})"
    if isinstance(exc, MCPError):
        return f"the upstream failed (MCP error {exc.code})"
    if isinstance(exc, OSError) and exc.strerror:
        return f"the upstream failed ({type(exc).__name__}: {exc.strerror})"
    return f"the upstream failed ({type(exc).__name__})"


def _session_gone(exc: MCPError) -> bool:
    return exc.code == types.INVALID_REQUEST and "session" in exc.message.lower()


class UpstreamConnection:
    """One pooled session to one upstream, kept open by its owner task."""

    def __init__(
        self,
        spec: ConnectionSpec,
        *,
        on_listing: ListingCallback | None = None,
        on_state: StateCallback | None = None,
        refresh_interval: float = REFRESH_INTERVAL_SECONDS,
        own_gateway_id: str | None = None,
        on_resource_updated: UpdatedCallback | None = None,
        resource_subscriptions: WantedCallback | None = None,
    ) -> None:
        self.spec = spec
        self._on_resource_updated = on_resource_updated
        self._wanted = resource_subscriptions
        self._subscribing = anyio.Lock()
        self._subscribed: frozenset[str] = frozenset()
        """The resources this session is subscribed to at the upstream now."""
        self._stream: anyio.CancelScope | None = None
        """The open ``subscriptions/listen`` stream of a 2026-07-28 session, if any."""
        self._session_group: anyio.abc.TaskGroup | None = None
        self.own_gateway_id = own_gateway_id
        self.refused: UpstreamIsSelf | None = None
        """Set when the upstream turned out to be this Tollgate: it is never served."""
        self.last_http_error: int | None = None
        """The HTTP status of the upstream's last error answer, if any."""
        self.client: Client | None = None
        self.era: str | None = None
        self.log_level: types.LoggingLevel | None = None
        """The level this session's upstream was last asked to log at (None: its default)."""
        self.last_used = anyio.current_time()
        self._on_listing = on_listing
        self._on_state = on_state
        self._refresh_interval = refresh_interval
        self._waiters = _Waiters()

    def _client(self, stack: AsyncExitStack) -> Client:
        options: dict[str, Any] = {
            "mode": self.spec.mode,
            "message_handler": self._on_message,
            "read_timeout_seconds": max(self.spec.timeout, CATALOGUE_TIMEOUT_SECONDS),
            # Relayed to the client whose call the upstream is serving (see relay.py).
            "logging_callback": relay_log,
            "sampling_callback": relay_sampling,
            "elicitation_callback": relay_elicitation,
            "list_roots_callback": relay_roots,
        }
        if self.spec.transport == "inproc":
            return Client(self.spec.server, **options)
        if self.spec.transport == "stdio":
            assert self.spec.command
            params = StdioServerParameters(
                command=self.spec.command,
                args=list(self.spec.args),
                env=stdio_environment(dict(self.spec.env)),
            )
            return Client(params, **options)
        assert self.spec.url
        http = httpx2.AsyncClient(
            event_hooks={"response": [self._note_status]},
            headers=dict(self.spec.headers),
            timeout=httpx2.Timeout(CONNECT_TIMEOUT_SECONDS, read=max(self.spec.timeout + 5, 30)),
        )
        stack.push_async_callback(http.aclose)
        return Client(streamable_http_client(self.spec.url, http_client=http), **options)

    async def _note_status(self, response: httpx2.Response) -> None:
        self.last_http_error = response.status_code if response.status_code >= 400 else None

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """The owner task: connect, serve, reconnect with backoff, until :meth:`stop`."""
        task_status.started()
        delay = BACKOFF_INITIAL_SECONDS
        while not self._waiters.stop.is_set():
            self._waiters.broken = anyio.Event()
            self._waiters.closed = anyio.Event()
            self.last_http_error = None
            try:
                await self._serve_one_session()
                delay = BACKOFF_INITIAL_SECONDS
            except Exception as exc:
                problem = describe_failure(exc, self.last_http_error)
                logger.warning("upstream %s is down: %s", self.spec.name, problem)
                if isinstance(refused := _leaf(exc), UpstreamIsSelf):
                    self.refused = refused
                    self._waiters.stop.set()
                await self._report(False, problem)
            finally:
                self.client, self._session_group = None, None
                self._waiters.closed.set()
                if self._waiters.ready.is_set():
                    self._waiters.ready = anyio.Event()
            if not self._waiters.stop.is_set():
                with anyio.move_on_after(delay):
                    await self._waiters.stop.wait()
                delay = min(delay * 2, BACKOFF_MAX_SECONDS)

    async def _serve_one_session(self) -> None:
        async with AsyncExitStack() as stack:
            client = await stack.enter_async_context(self._client(stack))
            self._refuse_self(client)
            self.client, self.era = client, client.protocol_version
            self.log_level = None
            async with anyio.create_task_group() as group:
                async with self._subscribing:  # a new session has subscribed to nothing yet
                    self._session_group = group
                    self._subscribed, self._stream = frozenset(), None
                if self.era in MODERN_PROTOCOL_VERSIONS:
                    # Listening before reading the catalogue: no change falls in between.
                    await self.update_subscriptions()
                await self.refresh()
                if self.era not in MODERN_PROTOCOL_VERSIONS:
                    await self.update_subscriptions()
                logger.info("upstream %s connected (protocol %s)", self.spec.name, self.era)
                group.start_soon(self._refresh_periodically)
                self._waiters.ready.set()
                await self._wait_stop_or_broken()
                group.cancel_scope.cancel()

    def _refuse_self(self, client: Client) -> None:
        """Refuse an upstream that reports this Tollgate's own id: serving its tools would
        list our own tools again, without end."""
        if self.own_gateway_id is None:
            return
        reported = reported_gateway_id(client.server_capabilities.extensions)
        if reported == self.own_gateway_id:
            raise UpstreamIsSelf()

    async def _wait_stop_or_broken(self) -> None:
        async with anyio.create_task_group() as group:
            for event in (self._waiters.stop, self._waiters.broken):
                group.start_soon(_cancel_when_set, event, group.cancel_scope)

    async def _refresh_periodically(self) -> None:
        while True:
            await anyio.sleep(self._refresh_interval)
            try:
                await self.refresh()
            except Exception as exc:
                problem = describe_failure(exc, self.last_http_error)
                logger.warning("upstream %s failed its check: %s", self.spec.name, problem)
                self.mark_broken()
                return

    async def refresh(self) -> UpstreamListing:
        """Read the upstream's tools, resources and prompts, and report them."""
        client = self.client
        if client is None:
            raise MCPError(types.INTERNAL_ERROR, f"upstream {self.spec.name} is not connected")
        capabilities = client.server_capabilities
        listing = UpstreamListing(tools=await _all_pages(client.list_tools, "tools"))
        if capabilities.resources is not None:
            listing.resources = await _optional_pages(client.list_resources, "resources")
            listing.templates = await _optional_pages(
                client.list_resource_templates, "resource_templates"
            )
        if capabilities.prompts is not None:
            listing.prompts = await _optional_pages(client.list_prompts, "prompts")
        if self._on_listing is not None:
            await self._on_listing(self.spec.name, listing)
        await self._report(True, None)
        return listing

    async def _report(self, up: bool, error: str | None) -> None:
        if self._on_state is not None:
            await self._on_state(self.spec.name, up, error, self.era)

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, Exception):
            logger.info("upstream %s transport: %s", self.spec.name, describe_failure(message))
            return
        if self.era in MODERN_PROTOCOL_VERSIONS:
            return
        if isinstance(message, types.ResourceUpdatedNotification):
            if self._on_resource_updated is not None:
                await self._on_resource_updated(self.spec.name, str(message.params.uri))
            return
        if isinstance(
            message,
            types.ToolListChangedNotification
            | types.PromptListChangedNotification
            | types.ResourceListChangedNotification,
        ):
            await self._refresh_quietly()

    async def update_subscriptions(self) -> None:
        """Subscribe this session to exactly the resources callers want of its upstream now
        (none when it offers no subscriptions): a handshake-era upstream is sent
        ``resources/subscribe`` and ``resources/unsubscribe`` for the difference; a
        2026-07-28 one gets a new listen stream with the new set (and the list-changed
        flags), opened before the old one is closed so no update falls in between."""
        async with self._subscribing:
            client, group = self.client, self._session_group
            if client is None or group is None:
                return  # the next session subscribes to what is wanted then
            wanted = self._wanted(self.spec.name) if self._wanted is not None else frozenset()
            if not _offers_subscriptions(client):
                wanted = frozenset()
            if self.era in MODERN_PROTOCOL_VERSIONS:
                await self._listen_again(client, group, wanted)
            else:
                await self._subscribe_handshake(client, wanted)

    async def _listen_again(
        self, client: Client, group: anyio.abc.TaskGroup, wanted: frozenset[str]
    ) -> None:
        needed = bool(wanted) or _announces_changes(client)
        if (self._stream is not None) == needed and wanted == self._subscribed:
            return
        old = self._stream
        self._stream = await group.start(self._listen_modern, client, wanted) if needed else None
        self._subscribed = wanted
        if old is not None:
            old.cancel()

    async def _subscribe_handshake(self, client: Client, wanted: frozenset[str]) -> None:
        for uri in sorted(wanted - self._subscribed):
            if await self._send_subscription(client, uri, subscribe=True):
                self._subscribed |= {uri}
        for uri in sorted(self._subscribed - wanted):
            await self._send_subscription(client, uri, subscribe=False)
            self._subscribed -= {uri}

    async def _send_subscription(self, client: Client, uri: str, *, subscribe: bool) -> bool:
        """``resources/subscribe`` (or unsubscribe) at a handshake-era upstream; whether
        it agreed."""
        request: types.SubscribeRequest | types.UnsubscribeRequest
        if subscribe:
            request = types.SubscribeRequest(params=types.SubscribeRequestParams(uri=uri))
        else:
            request = types.UnsubscribeRequest(params=types.UnsubscribeRequestParams(uri=uri))
        try:
            await client.session.send_request(request, types.EmptyResult)
        except MCPError as exc:
            logger.info("upstream %s refused %s: %s", self.spec.name, request.method, exc)
            return False
        return True

    async def _listen_modern(
        self,
        client: Client,
        resources: frozenset[str],
        *,
        task_status: anyio.abc.TaskStatus[anyio.CancelScope] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """One listen stream, until it is replaced (cancelled) or the upstream ends it
        (then the session is opened again: its events would otherwise be missed)."""
        changes = _announces_changes(client)
        with anyio.CancelScope() as scope:
            async with client.listen(
                tools_list_changed=changes,
                prompts_list_changed=changes,
                resources_list_changed=changes,
                resource_subscriptions=sorted(resources),
            ) as events:
                task_status.started(scope)  # the upstream acknowledged the subscription
                async for event in events:
                    await self._on_event(event)
            self.mark_broken()

    async def _on_event(self, event: ServerEvent) -> None:
        if isinstance(event, ResourceUpdated):
            if self._on_resource_updated is not None:
                await self._on_resource_updated(self.spec.name, event.uri)
            return
        await self._refresh_quietly()

    async def _refresh_quietly(self) -> None:
        try:
            await self.refresh()
        except Exception as exc:
            problem = describe_failure(exc, self.last_http_error)
            logger.warning("upstream %s refresh failed: %s", self.spec.name, problem)

    def stop(self) -> None:
        """Ask the owner task to close the session and end."""
        self._waiters.stop.set()

    def mark_broken(self) -> None:
        """Ask the owner task to reconnect."""
        self._waiters.broken.set()

    async def wait_ready(self) -> bool:
        """Wait until connected (bounded); True when a session is open."""
        if self.client is None:
            with anyio.move_on_after(READY_WAIT_SECONDS):
                await self._waiters.ready.wait()
        return self.client is not None

    async def call(self, operation: Callable[[Client], Awaitable[T]]) -> T:
        """Run ``operation`` on the open session.

        If the upstream says the session is gone (the request was not run), reconnect and
        retry once. A closed connection is not retried (the call may have run) but
        triggers a reconnect.
        """
        self.last_used = anyio.current_time()
        for attempt in (0, 1):
            if not await self.wait_ready():
                raise MCPError(types.INTERNAL_ERROR, f"upstream {self.spec.name} is unavailable")
            client, closed = self.client, self._waiters.closed
            assert client is not None
            try:
                return await operation(client)
            except MCPError as exc:
                gone = _session_gone(exc)
                if gone or exc.code == types.CONNECTION_CLOSED:
                    self.mark_broken()
                if not gone or attempt:
                    raise
                with anyio.move_on_after(READY_WAIT_SECONDS):
                    await closed.wait()
        raise AssertionError("unreachable")


def _offers_subscriptions(client: Client) -> bool:
    """Whether the upstream says it sends updates of the resources subscribed to."""
    resources = client.server_capabilities.resources
    return bool(resources and resources.subscribe)


def _announces_changes(client: Client) -> bool:
    """Whether the upstream says it sends list-changed events (else listening fails)."""
    capabilities = client.server_capabilities
    return any(
        getattr(getattr(capabilities, kind, None), "list_changed", False)
        for kind in ("tools", "resources", "prompts")
    )


async def _cancel_when_set(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def _all_pages(fetch: Callable[..., Awaitable[Any]], field: str) -> list[Any]:
    """Every item of a paginated list (``field`` of each page), following its cursors."""
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(MAX_LIST_PAGES):
        page = await fetch(cursor=cursor, cache_mode="bypass")
        items.extend(getattr(page, field))
        cursor = page.next_cursor
        if not cursor:
            return items
    logger.warning("a list still had more pages after %d; the rest is left out", MAX_LIST_PAGES)
    return items


async def _optional_pages(fetch: Callable[..., Awaitable[Any]], field: str) -> list[Any]:
    """:func:`_all_pages`, or nothing when the upstream does not answer the method at all
    (it declared the capability without, say, resource templates): not a failure."""
    try:
        return await _all_pages(fetch, field)
    except MCPError as exc:
        if exc.code == types.METHOD_NOT_FOUND:
            return []
        raise
