"""The two provider families, through their official client libraries: OpenAI-compatible
Chat Completions (OpenAI, Ollama, vLLM, llama.cpp, LM Studio) and Anthropic's Messages API.
Each streams a reply as text deltas, then the whole reply with its tool requests and usage."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
from anthropic import types as anthropic_types

from tollgate.chat.conversation import (
    ChatModel,
    Message,
    ProviderTimeout,
    ProviderUnavailable,
    Reply,
    TextDelta,
    ToolRequest,
    ToolSpec,
    Usage,
)
from tollgate.chat.llm_settings import ResolvedModel
from tollgate.chat.loop import arguments_of

DEFAULT_MAX_TOKENS = 4096
"""Anthropic requires ``max_tokens``; this is used when the session did not set one."""

NO_API_KEY = "none"
"""Local OpenAI-compatible servers need no key, but the client library requires one."""


def problem_of(exc: Exception) -> str:
    """What went wrong with a provider, in our words (both client libraries name their
    errors alike: a ``status_code`` for an HTTP answer, a connection error otherwise)."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return f"the provider answered HTTP {status}"
    if isinstance(exc, openai.APIConnectionError | anthropic.APIConnectionError):
        return "cannot reach the provider"
    return "the provider reported an error"


def chat_model(
    model: ResolvedModel, temperature: float | None, max_tokens: int | None
) -> ChatModel:
    """The adapter for ``model``'s provider."""
    if model.kind == "anthropic":
        return AnthropicModel(model, temperature, max_tokens)
    return OpenAIModel(model, temperature, max_tokens)


class OpenAIModel:
    """A model behind an OpenAI-compatible Chat Completions endpoint."""

    def __init__(self, model: ResolvedModel, temperature: float | None, max_tokens: int | None):
        self.model = model
        self.options: dict[str, Any] = {}
        if temperature is not None:
            self.options["temperature"] = temperature
        if max_tokens is not None:
            self.options["max_tokens"] = max_tokens

    async def stream(
        self, system: str, messages: list[Message], tools: list[ToolSpec]
    ) -> AsyncIterator[TextDelta | Reply]:
        """See :class:`ChatModel`."""
        client = openai.AsyncOpenAI(
            base_url=self.model.base_url or None,
            api_key=self.model.api_key or NO_API_KEY,
            timeout=self.model.timeout_seconds,
            max_retries=0,
        )
        try:
            async for piece in self._stream(client, system, messages, tools):
                yield piece
        except openai.APITimeoutError as exc:
            raise ProviderTimeout(str(exc)) from exc
        except openai.APIError as exc:
            raise ProviderUnavailable(problem_of(exc)) from exc
        finally:
            await client.close()

    async def _stream(
        self,
        client: openai.AsyncOpenAI,
        system: str,
        messages: list[Message],
        tools: list[ToolSpec],
    ) -> AsyncIterator[TextDelta | Reply]:
        options = dict(self.options)
        if tools:
            options["tools"] = [_openai_tool(t) for t in tools]
        completions: Any = client.chat.completions  # typed per model name and message shape
        stream = await completions.create(
            model=self.model.model_id,
            messages=[{"role": "system", "content": system}, *map(_openai_message, messages)],
            stream=True,
            stream_options={"include_usage": True},
            **options,
        )
        text: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        usage = Usage()
        async for chunk in stream:
            if chunk.usage is not None:
                usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
            for choice in chunk.choices:
                if choice.delta.content:
                    text.append(choice.delta.content)
                    yield TextDelta(choice.delta.content)
                _gather_calls(calls, choice.delta.tool_calls or [])
        requests = tuple(
            ToolRequest(c["id"] or f"call_{i}", c["name"], arguments_of(c["arguments"]))
            for i, c in sorted(calls.items())
        )
        yield Reply("".join(text), requests, usage)


def _gather_calls(calls: dict[int, dict[str, str]], deltas: list[Any]) -> None:
    """Tool-call fragments into whole calls (their arguments arrive in pieces)."""
    for delta in deltas:
        call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
        if delta.id:
            call["id"] = delta.id
        if delta.function is not None:
            call["name"] += delta.function.name or ""
            call["arguments"] += delta.function.arguments or ""


def _openai_tool(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.input_schema,
        },
    }


def _openai_message(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_id, "content": message.text}
    if message.role == "assistant" and message.tool_requests:
        return {
            "role": "assistant",
            "content": message.text or None,
            "tool_calls": [
                {
                    "id": r.id,
                    "type": "function",
                    "function": {"name": r.name, "arguments": json.dumps(r.arguments)},
                }
                for r in message.tool_requests
            ],
        }
    return {"role": message.role, "content": message.text}


class AnthropicModel:
    """A model behind Anthropic's Messages API."""

    def __init__(self, model: ResolvedModel, temperature: float | None, max_tokens: int | None):
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens or DEFAULT_MAX_TOKENS

    async def stream(
        self, system: str, messages: list[Message], tools: list[ToolSpec]
    ) -> AsyncIterator[TextDelta | Reply]:
        """See :class:`ChatModel`."""
        client = anthropic.AsyncAnthropic(
            base_url=self.model.base_url or None,
            api_key=self.model.api_key or NO_API_KEY,
            timeout=self.model.timeout_seconds,
            max_retries=0,
        )
        try:
            async for piece in self._stream(client, system, messages, tools):
                yield piece
        except anthropic.APITimeoutError as exc:
            raise ProviderTimeout(str(exc)) from exc
        except anthropic.APIError as exc:
            raise ProviderUnavailable(problem_of(exc)) from exc
        finally:
            await client.close()

    async def _stream(
        self,
        client: anthropic.AsyncAnthropic,
        system: str,
        messages: list[Message],
        tools: list[ToolSpec],
    ) -> AsyncIterator[TextDelta | Reply]:
        options: dict[str, Any] = {}
        if self.temperature is not None:
            options["temperature"] = self.temperature
        if tools:
            options["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.input_schema}
                for t in tools
            ]
        messages_api: Any = client.messages  # typed per message shape
        stream = await messages_api.create(
            model=self.model.model_id,
            max_tokens=self.max_tokens,
            system=system,
            messages=_anthropic_messages(messages),
            stream=True,
            **options,
        )
        blocks = _AnthropicBlocks()
        async for event in stream:
            text = blocks.take(event)
            if text:
                yield TextDelta(text)
        yield blocks.reply()


class _AnthropicBlocks:
    """A streamed Messages API answer, gathered block by block."""

    def __init__(self) -> None:
        self.blocks: dict[int, dict[str, str]] = {}
        self.input_tokens = 0
        self.output_tokens = 0

    def take(self, event: Any) -> str:
        """Gather one event; the text it adds to the answer, if any."""
        if isinstance(event, anthropic_types.RawMessageStartEvent):
            self.input_tokens = event.message.usage.input_tokens
        elif isinstance(event, anthropic_types.RawContentBlockStartEvent):
            block = event.content_block
            entry = {"type": block.type, "text": "", "json": "", "id": "", "name": ""}
            if isinstance(block, anthropic_types.ToolUseBlock):
                entry |= {"id": block.id, "name": block.name}
            self.blocks[event.index] = entry
        elif isinstance(event, anthropic_types.RawContentBlockDeltaEvent):
            return self._delta(event)
        elif isinstance(event, anthropic_types.RawMessageDeltaEvent):
            self.output_tokens = event.usage.output_tokens
        return ""

    def _delta(self, event: anthropic_types.RawContentBlockDeltaEvent) -> str:
        block = self.blocks.setdefault(
            event.index, {"type": "text", "text": "", "json": "", "id": "", "name": ""}
        )
        delta = event.delta
        if isinstance(delta, anthropic_types.TextDelta):
            block["text"] += delta.text
            return delta.text
        if isinstance(delta, anthropic_types.InputJSONDelta):
            block["json"] += delta.partial_json
        return ""

    def reply(self) -> Reply:
        """The whole answer."""
        return _anthropic_reply(self.blocks, Usage(self.input_tokens, self.output_tokens))


def _anthropic_reply(blocks: dict[int, dict[str, str]], usage: Usage) -> Reply:
    ordered = [blocks[i] for i in sorted(blocks)]
    text = "".join(b["text"] for b in ordered if b["type"] == "text")
    requests = tuple(
        ToolRequest(b["id"], b["name"], arguments_of(b["json"]))
        for b in ordered
        if b["type"] == "tool_use"
    )
    return Reply(text, requests, usage)


def _anthropic_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Tollgate's messages in the Messages API's form: tool results are user content blocks,
    consecutive ones merged into one user message."""
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": message.tool_id,
                "content": message.text,
                "is_error": message.is_error,
            }
            if out and out[-1]["role"] == "user" and isinstance(out[-1]["content"], list):
                out[-1]["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
        elif message.role == "assistant":
            content: list[dict[str, Any]] = (
                [{"type": "text", "text": message.text}] if message.text else []
            )
            content += [
                {"type": "tool_use", "id": r.id, "name": r.name, "input": r.arguments}
                for r in message.tool_requests
            ]
            out.append({"role": "assistant", "content": content})
        else:
            out.append({"role": "user", "content": message.text})
    return out
