"""Bodies of the LLM settings routes and of ``/llmchat`` (seed 003's shapes)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

ProviderName = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z][a-z0-9-]{0,63}$")
]
ModelId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Price = Annotated[Decimal, Field(ge=0, le=1_000_000, max_digits=12, decimal_places=6)]
BaseUrl = Annotated[str, StringConstraints(max_length=2000, pattern=r"^https?://[^\s]+$")]
ApiKey = Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=r"^[^\r\n]*$")]


class ProviderCreate(BaseModel):
    """A new LLM provider: an OpenAI-compatible server or Anthropic's API."""

    model_config = ConfigDict(extra="forbid")

    name: ProviderName
    kind: Literal["openai", "anthropic"]
    base_url: BaseUrl | None = None
    api_key: ApiKey | None = None
    timeout_seconds: float = Field(default=60.0, gt=0, le=600)
    enabled: bool = True


class ProviderUpdate(BaseModel):
    """Changes to a provider; omitted fields stay as they are (``api_key: ""`` removes it)."""

    model_config = ConfigDict(extra="forbid")

    base_url: BaseUrl | None = None
    api_key: Annotated[str, StringConstraints(max_length=2000, pattern=r"^[^\r\n]*$")] | None = None
    timeout_seconds: float | None = Field(default=None, gt=0, le=600)
    enabled: bool | None = None


class ProviderOut(BaseModel):
    """A provider as admins see it: the API key masked."""

    id: int
    name: str
    kind: str
    base_url: str | None
    api_key: str | None
    timeout_seconds: float
    enabled: bool
    created_at: datetime


class ModelCreate(BaseModel):
    """A model offered by a provider."""

    model_config = ConfigDict(extra="forbid")

    provider: ProviderName
    model_id: ModelId
    display_name: Annotated[str, StringConstraints(max_length=200)] | None = None
    supports_streaming: bool = True
    supports_function_calling: bool = True
    supports_vision: bool = False
    input_price_per_million: Price = Decimal(0)
    output_price_per_million: Price = Decimal(0)
    enabled: bool = True


class ModelOut(BaseModel):
    """A model as admins see it."""

    id: int
    provider: str
    model_id: str
    display_name: str | None
    supports_streaming: bool
    supports_function_calling: bool
    supports_vision: bool
    input_price_per_million: Decimal
    output_price_per_million: Decimal
    enabled: bool


class GatewayModel(BaseModel):
    """One model as ``/llmchat/gateway/models`` lists it (seed 003's fields)."""

    id: str
    model_id: str
    model_name: str
    provider_id: str
    provider_name: str
    provider_type: str
    supports_streaming: bool
    supports_function_calling: bool
    supports_vision: bool


class LLMInput(BaseModel):
    """Which configured model to chat with."""

    model: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, gt=0, le=200_000)


class ServerInput(BaseModel):
    """Where the chat's tools come from: Tollgate's own ``/mcp`` (or a virtual server's
    path) by default; another MCP server only where settings allow it."""

    url: Annotated[str, StringConstraints(max_length=2000)] | None = None
    transport: Literal["streamable_http"] | None = "streamable_http"
    auth_token: Annotated[str, StringConstraints(max_length=4000)] | None = None


class ConnectInput(BaseModel):
    """``POST /llmchat/connect``."""

    user_id: Annotated[str, StringConstraints(max_length=200)] | None = None
    server: ServerInput | None = None
    llm: LLMInput
    streaming: bool = False


class ChatInput(BaseModel):
    """``POST /llmchat/chat``."""

    user_id: Annotated[str, StringConstraints(max_length=200)] | None = None
    message: Annotated[str, StringConstraints(max_length=100_000)]
    streaming: bool = False


class DisconnectInput(BaseModel):
    """``POST /llmchat/disconnect``."""

    user_id: Annotated[str, StringConstraints(max_length=200)] | None = None
