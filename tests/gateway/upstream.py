"""A real upstream MCP server for the gateway tests, built with the SDK.

Tools: echo, add, slow, steps (reports progress), fail (a tool error), mutate (adds a tool
and announces it), add_prompt (the same for a prompt), roots (lists the client's roots),
touch (says a resource changed to its subscribers, in both eras); a resource, a resource
template and a prompt, with completions for their ``who`` argument. Who is subscribed to
which resource is kept in a :class:`Subscribers`.
``HeaderRecorder`` keeps the Authorization header of every request it serves.
Run in a thread of the test process (``serve_in_thread``) or as a process:
``python tests/gateway/upstream.py stdio`` / ``... http`` (prints ``LISTENING <url>``).
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import anyio
import uvicorn
from mcp.server import ServerRequestContext
from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult
from mcp.server.mcpserver import (
    AcceptedElicitation,
    Context,
    Elicit,
    ElicitationResult,
    ListRoots,
    MCPServer,
    Resolve,
    Sample,
)
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.prompts import Prompt
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import (
    Completion,
    CompletionArgument,
    CompletionContext,
    CreateMessageResult,
    EmptyResult,
    ListRootsResult,
    LoggingMessageNotification,
    LoggingMessageNotificationParams,
    PromptReference,
    ResourceTemplateReference,
    SamplingMessage,
    SubscribeRequestParams,
    TextContent,
    UnsubscribeRequestParams,
)
from pydantic import BaseModel

STARTUP_SECONDS = 10.0
"""An upstream not serving by then has failed to start."""

ALLOW_LOCAL = TransportSecuritySettings(
    enable_dns_rebinding_protection=True,
    allowed_hosts=["127.0.0.1:*", "localhost:*"],
    allowed_origins=["http://127.0.0.1:*", "http://localhost:*"],
)


SLOW_CALLS_RUNNING: dict[str, int] = {}
"""How many ``slow`` calls each in-process test upstream (by name) is running now."""


def make_server(
    name: str = "upstream", extra_tools: int = 0, subscribers: Subscribers | None = None
) -> MCPServer:
    """The test upstream (with ``extra_tools`` more numbered tools, for listing benchmarks),
    keeping its resource subscriptions in ``subscribers``."""
    server = MCPServer(name, version="1.0.0", log_level="WARNING")
    for number in range(extra_tools):
        server.add_tool(
            lambda value: value, name=f"tool_{number:03d}", description=f"Numbered tool {number}"
        )
    _add_quick_tools(server)
    _add_long_tools(server, name)
    _add_content(server, name)
    _add_asking_tools(server)
    _add_subscriptions(server, subscribers or Subscribers())
    return server


class Subscribers:
    """Who is subscribed to which of an upstream's resources: handshake-era sessions
    (``resources/subscribe``) and open 2026-07-28 listen streams naming the resource."""

    def __init__(self) -> None:
        self.sessions: dict[str, set[Connection]] = {}
        self.streams: Counter[str] = Counter()

    def count(self, uri: str) -> int:
        """How many sessions and open listen streams are subscribed to ``uri``."""
        return len(self.sessions.get(uri, ())) + self.streams[uri]

    def wanted(self) -> set[str]:
        """The URIs someone is subscribed to now, in either era."""
        return {uri for uri in {*self.sessions, *self.streams} if self.count(uri) > 0}


def _listened(params: Mapping[str, Any] | None) -> list[str]:
    """The resource URIs a raw ``subscriptions/listen`` request names."""
    notifications = (params or {}).get("notifications") or {}
    return [str(uri) for uri in notifications.get("resourceSubscriptions") or ()]


def _add_subscriptions(server: MCPServer, subscribers: Subscribers) -> None:
    # A request's ServerSession is the request's own; the session's is its Connection (the
    # SDK has no public accessor for it).
    async def subscribe(ctx: ServerRequestContext[Any], params: SubscribeRequestParams) -> Any:
        subscribers.sessions.setdefault(str(params.uri), set()).add(ctx.session._connection)
        return EmptyResult()

    async def unsubscribe(ctx: ServerRequestContext[Any], params: UnsubscribeRequestParams) -> Any:
        subscribers.sessions.get(str(params.uri), set()).discard(ctx.session._connection)
        return EmptyResult()

    async def count_streams(ctx: ServerRequestContext[Any], call_next: CallNext) -> HandlerResult:
        uris = _listened(ctx.params) if ctx.method == "subscriptions/listen" else []
        subscribers.streams.update(uris)
        try:
            return await call_next(ctx)
        finally:
            subscribers.streams.subtract(uris)

    # MCPServer has no public way to serve resources/subscribe (the SDK's own conformance
    # server registers it the same way).
    lowlevel = server._lowlevel_server
    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)
    server.middleware.append(count_streams)

    @server.tool()
    async def touch(uri: str, ctx: Context) -> str:
        """Say that the resource ``uri`` changed, to every session subscribed to it: listen
        streams, and handshake-era sessions (not the one calling, unless it subscribed)."""
        await ctx.notify_resource_updated(uri)
        for connection in list(subscribers.sessions.get(uri, ())):
            await connection.send_resource_updated(uri)
        return f"touched {uri}"


class Answer(BaseModel):
    """What the ``ask`` tool asks the user for."""

    answer: str


def _question(question: str) -> Elicit[Answer]:
    return Elicit(question, Answer)


def _prompt_for(topic: str) -> Sample:
    said = TextContent(type="text", text=f"Say something about {topic}")
    return Sample([SamplingMessage(role="user", content=said)], max_tokens=50)


def _client_roots() -> ListRoots:
    return ListRoots()


LOG_LINES = ("debug", "info", "warning", "error")
"""The levels ``chatty`` logs at, one line each."""


def _add_asking_tools(server: MCPServer) -> None:
    @server.tool()
    async def ask(
        question: str, reply: Annotated[ElicitationResult[Answer], Resolve(_question)]
    ) -> str:
        """Ask the user ``question`` (elicitation), and say what they answered."""
        if isinstance(reply, AcceptedElicitation):
            return f"accept: {reply.data.answer}"
        return reply.action

    @server.tool()
    async def sample(topic: str, said: Annotated[CreateMessageResult, Resolve(_prompt_for)]) -> str:
        """Ask the client's model about ``topic`` (sampling), and repeat its answer."""
        content = said.content
        return f"model said: {content.text if isinstance(content, TextContent) else '?'}"

    @server.tool()
    async def roots(found: Annotated[ListRootsResult, Resolve(_client_roots)]) -> str:
        """List the client's roots (``roots/list``)."""
        return " ".join(str(root.uri) for root in found.roots) or "no roots"

    @server.tool()
    async def chatty(ctx: Context) -> str:
        """Log one line at each of :data:`LOG_LINES` during the call."""
        session = ctx.request_context.session
        for level in LOG_LINES:
            line = LoggingMessageNotificationParams(
                level=level, data=f"{level} line", logger="chatty"
            )
            await session.send_notification(
                LoggingMessageNotification(params=line), related_request_id=ctx.request_id
            )
        return "logged"


def _add_quick_tools(server: MCPServer) -> None:
    @server.tool()
    def echo(text: str) -> str:
        """Echo the text back."""
        return text

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def fail() -> str:
        """Always a tool error."""
        raise ToolError("boom from upstream")

    @server.tool()
    async def mutate(tool_name: str, ctx: Context) -> str:
        """Add a tool at run time and announce the change in both eras."""

        def added() -> str:
            return f"I am {tool_name}"

        server.add_tool(added, name=tool_name, description="added at run time")
        await ctx.session.send_tool_list_changed()
        await ctx.notify_tools_changed()
        return f"added {tool_name}"

    @server.tool()
    async def add_prompt(prompt_name: str, ctx: Context) -> str:
        """Add a prompt at run time and announce that the prompts changed, in both eras."""

        def added() -> str:
            return f"prompt {prompt_name}"

        server.add_prompt(Prompt.from_function(added, name=prompt_name))
        await ctx.session.send_prompt_list_changed()
        await ctx.notify_prompts_changed()
        return f"added prompt {prompt_name}"


def _add_long_tools(server: MCPServer, name: str) -> None:
    @server.tool()
    async def slow(seconds: float) -> str:
        """Sleep, then answer."""
        SLOW_CALLS_RUNNING[name] = SLOW_CALLS_RUNNING.get(name, 0) + 1
        try:
            await anyio.sleep(seconds)
        finally:
            SLOW_CALLS_RUNNING[name] -= 1
        return f"slept {seconds}"

    @server.tool()
    async def steps(count: int, ctx: Context) -> str:
        """Report progress ``count`` times, then answer."""
        for step in range(1, count + 1):
            await ctx.report_progress(step, count, f"step {step}")
        return f"{count} steps"


def _add_content(server: MCPServer, name: str) -> None:
    @server.resource("res://hello", name="hello", mime_type="text/plain")
    def hello() -> str:
        return f"hello from {name}"

    @server.prompt()
    def greet(who: str) -> str:
        """A greeting."""
        return f"Please greet {who} warmly."

    @server.resource("res://greeting/{who}", name="greeting", mime_type="text/plain")
    def greeting(who: str) -> str:
        return f"hello {who}"

    @server.completion()  # type: ignore[no-untyped-call,untyped-decorator]  # the SDK leaves it untyped
    async def complete(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion | None:
        if argument.name != "who":
            return None
        names = ["alice", "albert", "bob"]
        return Completion(values=[n for n in names if n.startswith(argument.value)])


class HeaderRecorder:
    """ASGI wrapper keeping the Authorization header of every request it sees."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            self.seen.append(headers.get(b"authorization", b"").decode())
        await self.app(scope, receive, send)


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def started(server: uvicorn.Server, thread: threading.Thread) -> bool:
    """Whether ``server`` (run by ``thread``) serves; raises when the thread has ended."""
    if not server.started and not thread.is_alive():
        raise RuntimeError("server exited before it started")
    return server.started


def serve_in_thread(app: Any, path: str = "/mcp") -> tuple[str, Callable[[], None]]:
    """Serve an ASGI app on 127.0.0.1 in a daemon thread; returns (url, stop)."""
    sock = _socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_SECONDS
    while not started(server, thread):  # a script too: it cannot import tests.waiting
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    return f"http://127.0.0.1:{port}{path}", stop


def main() -> None:
    """Serve the test upstream over stdio or HTTP."""
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["stdio", "http"])
    parser.add_argument("--name", default="upstream")
    parser.add_argument("--extra-tools", type=int, default=0)
    parser.add_argument(
        "--fast",
        action="store_true",
        help="stateless, JSON responses: as fast as the SDK serves (the benchmarks' upstream)",
    )
    args = parser.parse_args()
    server = make_server(args.name, args.extra_tools)
    if args.mode == "stdio":
        server.run("stdio")
        return
    sock = _socket()
    sock.listen(1024)
    print(f"LISTENING http://127.0.0.1:{sock.getsockname()[1]}/mcp", flush=True)
    app = server.streamable_http_app(
        transport_security=ALLOW_LOCAL, stateless_http=args.fast, json_response=args.fast
    )
    uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2)).run(
        sockets=[sock]
    )


if __name__ == "__main__":
    main()
