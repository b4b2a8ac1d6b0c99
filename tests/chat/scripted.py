"""Scripted LLM providers on 127.0.0.1 that speak the real wire formats: OpenAI's streamed
Chat Completions (tool-call arguments split across chunks, a final usage chunk) and
Anthropic's streamed Messages events (``input_json_delta`` pieces). Each request is
answered with the next scripted reply and kept, so a test can read what the model was sent."""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread

HOLD_SECONDS = 30.0
"""A held reply waits at most this long for the test to release it."""


@dataclass
class Scripted:
    """One reply: text, and optionally a tool call; or an HTTP error status."""

    text: str = ""
    tool: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    status: int | None = None
    hold: threading.Event | None = None
    usage: tuple[int, int] = (11, 7)


def pieces(text: str, count: int = 3) -> list[str]:
    """``text`` cut into ``count`` pieces (how providers stream long values)."""
    size = max(1, -(-len(text) // count))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


class ScriptedLLM:
    """An ASGI app answering ``POST .../chat/completions`` (OpenAI) or ``.../messages``
    (Anthropic) from a script."""

    def __init__(self) -> None:
        self.replies: deque[Scripted] = deque()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []

    def say(self, text: str = "", **options: Any) -> None:
        """Script the next reply."""
        self.replies.append(Scripted(text, **options))

    def unscripted(self, request: dict[str, Any]) -> Scripted:
        """The reply when nothing is scripted (the demo server's only mode): call the first
        offered tool whose name ends in ``echo`` with the user's words, then report what it
        answered."""
        result = _tool_result(request)
        if result is not None:
            return Scripted(f"The tool answered: {result}")
        echo = next((name for name in _tool_names(request) if name.endswith("echo")), None)
        words = _last_user_text(request)
        if echo is None:
            return Scripted(f"You said: {words}")
        return Scripted(tool=echo, arguments={"message": words})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.requests.append(json.loads(body or b"{}"))
        self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
        reply = self.replies.popleft() if self.replies else self.unscripted(self.requests[-1])
        if reply.hold is not None:
            await anyio.to_thread.run_sync(reply.hold.wait, HOLD_SECONDS)
        if reply.status is not None:
            await _json(send, reply.status, {"error": {"message": "scripted failure"}})
            return
        anthropic = scope["path"].endswith("/messages")
        events = _anthropic_events(reply) if anthropic else _openai_events(reply)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for event in events:
            await send({"type": "http.response.body", "body": event.encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _json(send: Any, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def _chunk(delta: dict[str, Any], finish: str | None = None) -> str:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    body = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    return f"data: {json.dumps({**body, 'choices': [choice]})}\n\n"


def _openai_events(reply: Scripted) -> Iterator[str]:
    yield _chunk({"role": "assistant", "content": ""})
    for piece in pieces(reply.text) if reply.text else []:
        yield _chunk({"content": piece})
    if reply.tool:
        call = {"index": 0, "id": "call_1", "type": "function"}
        yield _chunk({"tool_calls": [{**call, "function": {"name": reply.tool, "arguments": ""}}]})
        for piece in pieces(json.dumps(reply.arguments)):
            yield _chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
    yield _chunk({}, "tool_calls" if reply.tool else "stop")
    usage = {"prompt_tokens": reply.usage[0], "completion_tokens": reply.usage[1]}
    body = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    yield f"data: {json.dumps({**body, 'choices': [], 'usage': usage})}\n\n"
    yield "data: [DONE]\n\n"


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n"


def _anthropic_events(reply: Scripted) -> Iterator[str]:
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": []}
    usage = {"input_tokens": reply.usage[0], "output_tokens": 1}
    yield _event("message_start", {"message": {**message, "usage": usage}})
    index = 0
    if reply.text:
        yield _event(
            "content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}
        )
        for piece in pieces(reply.text):
            delta = {"type": "text_delta", "text": piece}
            yield _event("content_block_delta", {"index": 0, "delta": delta})
        yield _event("content_block_stop", {"index": 0})
        index = 1
    if reply.tool:
        block = {"type": "tool_use", "id": "toolu_1", "name": reply.tool, "input": {}}
        yield _event("content_block_start", {"index": index, "content_block": block})
        for piece in pieces(json.dumps(reply.arguments)):
            delta = {"type": "input_json_delta", "partial_json": piece}
            yield _event("content_block_delta", {"index": index, "delta": delta})
        yield _event("content_block_stop", {"index": index})
    stop = {"stop_reason": "tool_use" if reply.tool else "end_turn", "stop_sequence": None}
    yield _event("message_delta", {"delta": stop, "usage": {"output_tokens": reply.usage[1]}})
    yield _event("message_stop", {})


def _tool_names(request: dict[str, Any]) -> list[str]:
    tools = request.get("tools") or []
    return [str(t["function"]["name"] if "function" in t else t["name"]) for t in tools]


def _tool_result(request: dict[str, Any]) -> str | None:
    last = (request.get("messages") or [{}])[-1]
    if last.get("role") == "tool":
        return str(last.get("content"))
    content = last.get("content")
    if isinstance(content, list) and content and content[-1].get("type") == "tool_result":
        return str(content[-1].get("content"))
    return None


def _last_user_text(request: dict[str, Any]) -> str:
    for message in reversed(request.get("messages") or []):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return str(message["content"])
    return ""


def main() -> None:
    """``python -m tests.chat.scripted --port 9100``: the demo provider of the README's chat
    walk-through (OpenAI's wire format at ``/v1``, Anthropic's at ``/v1/messages``)."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=9100)
    port = parser.parse_args().port
    uvicorn.run(ScriptedLLM(), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
