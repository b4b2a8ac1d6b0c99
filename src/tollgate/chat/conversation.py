"""A chat as Tollgate keeps it, whatever the provider: messages, tool requests and results,
and what a model's answer streams. Provider adapters translate to and from their formats."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class ToolRequest:
    """A model asking for one tool call."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Message:
    """One entry of a conversation."""

    role: Literal["user", "assistant", "tool"]
    text: str = ""
    tool_requests: tuple[ToolRequest, ...] = ()
    """What an assistant message asked for."""
    tool_id: str | None = None
    tool_name: str | None = None
    is_error: bool = False
    """A tool message: which request it answers, and whether the tool failed."""

    def to_json(self) -> dict[str, Any]:
        """A JSON form for the session store."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Message:
        """Read back what :meth:`to_json` wrote."""
        requests = tuple(ToolRequest(**r) for r in data.get("tool_requests", ()))
        return cls(**{**data, "tool_requests": requests})


@dataclass(frozen=True)
class ToolSpec:
    """A tool the model may call."""

    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True)
class Usage:
    """Tokens one model call consumed."""

    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class TextDelta:
    """A piece of the answer's text, as it streams."""

    text: str


@dataclass(frozen=True)
class Reply:
    """A model's whole answer to one request: its text and the tools it asks for."""

    text: str
    tool_requests: tuple[ToolRequest, ...] = ()
    usage: Usage = field(default_factory=Usage)


class ProviderUnavailable(Exception):
    """The provider could not be reached, or answered with an error."""


class ProviderTimeout(Exception):
    """The provider did not answer in time."""


class ChatModel(Protocol):
    """One configured model of one provider."""

    def stream(
        self, system: str, messages: list[Message], tools: list[ToolSpec]
    ) -> AsyncIterator[TextDelta | Reply]:
        """The answer to ``messages``: text deltas as they come, then the whole reply.
        Raises :class:`ProviderUnavailable` or :class:`ProviderTimeout`."""
        ...
