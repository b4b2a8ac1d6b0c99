"""One chat turn: the model answers, asks for tools, Tollgate calls them, the model goes on;
bounded in steps, and in the size of what a tool may put into the conversation.

The turn is a stream of events (seed 003's SSE events): ``token``, ``tool_start``,
``tool_end``, ``tool_error`` and one ``final``. A failing tool is a ``tool_error`` and the
model is told, so the turn goes on.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tollgate.chat.conversation import (
    ChatModel,
    Message,
    Reply,
    TextDelta,
    ToolRequest,
    ToolSpec,
    Usage,
)

SYSTEM_PROMPT = (
    "You are a helpful assistant. You can call the tools offered to you; use them when they "
    "help answer the user, and say plainly when a tool fails."
)

Event = dict[str, Any]


@dataclass(frozen=True)
class ToolOutcome:
    """What one tool call gave back."""

    text: str
    is_error: bool
    credits: int | None = None


class ToolSource(Protocol):
    """Where a chat's tools come from (Tollgate's own gateway, or another MCP server)."""

    async def tools(self) -> list[ToolSpec]:
        """The tools offered now."""
        ...

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        """Call one tool; a failure is an outcome with ``is_error``, not an exception."""
        ...


@dataclass(frozen=True)
class Limits:
    """The bounds of one turn."""

    max_steps: int
    tool_result_chars: int


@dataclass
class TurnRecord:
    """What a turn did, for its ``final`` event and the non-streaming answer."""

    started: float = field(default_factory=time.perf_counter)
    tools_used: list[str] = field(default_factory=list)
    invocations: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    credits: int = 0

    def add_usage(self, usage: Usage) -> None:
        """Count one model call's tokens."""
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens

    def metadata(self) -> dict[str, Any]:
        """The ``final`` event's ``metadata``."""
        return {
            "tool_used": bool(self.invocations),
            "tools": self.tools_used,
            "tool_invocations": self.invocations,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "credits_charged": self.credits,
            "elapsed_ms": round((time.perf_counter() - self.started) * 1000),
        }


UsageSink = Callable[[Usage], Awaitable[None]]


def capped(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying so."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n[... cut: the tool returned {len(text)} characters]"


async def run_turn(
    model: ChatModel,
    source: ToolSource,
    history: list[Message],
    message: str,
    limits: Limits,
    on_usage: UsageSink,
    record: TurnRecord,
) -> AsyncIterator[Event]:
    """Answer ``message`` after ``history`` (which the turn extends in place)."""
    history.append(Message(role="user", text=message))
    tools = await source.tools()
    reply = Reply(text="")
    for _ in range(limits.max_steps):
        reply = Reply(text="")
        async for piece in model.stream(SYSTEM_PROMPT, history, tools):
            if isinstance(piece, TextDelta):
                yield {"type": "token", "content": piece.text}
            else:
                reply = piece
        record.add_usage(reply.usage)
        await on_usage(reply.usage)
        history.append(
            Message(role="assistant", text=reply.text, tool_requests=reply.tool_requests)
        )
        if not reply.tool_requests:
            yield {"type": "final", "text": reply.text, "metadata": record.metadata()}
            return
        for request in reply.tool_requests:
            async for event in _call_tool(source, request, limits, history, record):
                yield event
    text = reply.text or f"Stopped after {limits.max_steps} steps of tool calls."
    yield {"type": "final", "text": text, "metadata": {**record.metadata(), "truncated": True}}


async def _call_tool(
    source: ToolSource,
    request: ToolRequest,
    limits: Limits,
    history: list[Message],
    record: TurnRecord,
) -> AsyncIterator[Event]:
    yield {
        "type": "tool_start",
        "id": request.id,
        "tool": request.name,
        "arguments": request.arguments,
    }
    started = time.perf_counter()
    outcome = await source.call(request.name, request.arguments)
    latency_ms = round((time.perf_counter() - started) * 1000, 1)
    record.invocations += 1
    if request.name not in record.tools_used:
        record.tools_used.append(request.name)
    record.credits += outcome.credits or 0
    text = capped(outcome.text, limits.tool_result_chars)
    history.append(
        Message(
            role="tool",
            text=text,
            tool_id=request.id,
            tool_name=request.name,
            is_error=outcome.is_error,
        )
    )
    common = {"id": request.id, "tool": request.name, "latency_ms": latency_ms}
    if outcome.is_error:
        yield {"type": "tool_error", **common, "error": text, "credits": outcome.credits}
    else:
        yield {"type": "tool_end", **common, "result": text, "credits": outcome.credits}


def arguments_of(raw: str) -> dict[str, Any]:
    """A tool request's JSON arguments as the model wrote them ({} when not an object)."""
    try:
        parsed = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}
