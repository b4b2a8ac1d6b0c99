"""Bodies of the upstream admin routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

UpstreamName = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z][a-z0-9-]{0,31}$")
]
"""Lowercase, digits and single dashes: it prefixes tool names as ``<name>__<tool>``."""

ToolName = Annotated[str, StringConstraints(min_length=1, max_length=200)]
HeaderName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]{1,100}$")]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")]
HeaderValue = Annotated[
    str, StringConstraints(min_length=1, max_length=4000, pattern=r"^[^\r\n\x00]*$")
]
Price = Annotated[int, Field(ge=0, le=1_000_000)]

MAX_TIMEOUT_SECONDS = 600
"""The longest an upstream call may take before it counts as a backend failure."""


class UpstreamSpec(BaseModel):
    """Everything that defines an upstream; shared by create and update."""

    model_config = ConfigDict(extra="forbid")

    transport: Literal["streamable_http", "stdio"] = "streamable_http"
    url: Annotated[str, StringConstraints(max_length=2000, pattern=r"^https?://[^\s]+$")] | None = (
        None
    )
    command: Annotated[str, StringConstraints(min_length=1, max_length=2000)] | None = None
    args: list[Annotated[str, StringConstraints(max_length=2000)]] = Field(
        default_factory=list, max_length=100
    )
    env: dict[EnvName, HeaderValue] = Field(default_factory=dict, max_length=100)
    auth: Literal["none", "static", "broker"] = "none"
    headers: dict[HeaderName, HeaderValue] = Field(default_factory=dict, max_length=50)
    broker_service: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,63}$")] | None = (
        None
    )
    broker_header: (
        Annotated[
            str,
            StringConstraints(max_length=500, pattern=r"^[A-Za-z0-9-]{1,100}: .*\{[a-z_]+\}.*$"),
        ]
        | None
    ) = None
    price: Price = 1
    tool_prices: dict[ToolName, Price] = Field(default_factory=dict, max_length=1000)
    tools_allowed: list[ToolName] = Field(default_factory=list, max_length=1000)
    tools_denied: list[ToolName] = Field(default_factory=list, max_length=1000)
    timeout_seconds: float = Field(default=30.0, gt=0, le=MAX_TIMEOUT_SECONDS)
    enabled: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> UpstreamSpec:
        if self.transport == "streamable_http" and not self.url:
            raise ValueError("a streamable_http upstream needs a url")
        if self.transport == "stdio" and not self.command:
            raise ValueError("a stdio upstream needs a command")
        if self.auth == "broker" and not (self.broker_service and self.broker_header):
            raise ValueError("broker auth needs broker_service and broker_header")
        if self.auth == "static" and not self.headers:
            raise ValueError("static auth needs headers")
        return self


class UpstreamCreate(UpstreamSpec):
    """A new upstream."""

    name: UpstreamName


class UpstreamUpdate(BaseModel):
    """Changes to an upstream; omitted fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, StringConstraints(max_length=2000, pattern=r"^https?://[^\s]+$")] | None = (
        None
    )
    command: Annotated[str, StringConstraints(min_length=1, max_length=2000)] | None = None
    args: list[Annotated[str, StringConstraints(max_length=2000)]] | None = Field(
        default=None, max_length=100
    )
    env: dict[EnvName, HeaderValue] | None = Field(default=None, max_length=100)
    headers: dict[HeaderName, HeaderValue] | None = Field(default=None, max_length=50)
    price: Price | None = None
    tool_prices: dict[ToolName, Price] | None = Field(default=None, max_length=1000)
    tools_allowed: list[ToolName] | None = Field(default=None, max_length=1000)
    tools_denied: list[ToolName] | None = Field(default=None, max_length=1000)
    timeout_seconds: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT_SECONDS)
    enabled: bool | None = None


class ToolSummary(BaseModel):
    """A tool as the gateway exposes it."""

    name: str
    upstream_tool: str
    price: int
    description: str | None = None


class UpstreamOut(BaseModel):
    """An upstream as admins see it: header and env values masked."""

    id: int
    name: str
    transport: str
    url: str | None
    command: str | None
    args: list[str]
    env: dict[str, str]
    auth: str
    headers: dict[str, str]
    broker_service: str | None
    broker_header: str | None
    price: int
    tool_prices: dict[str, int]
    tools_allowed: list[str]
    tools_denied: list[str]
    timeout_seconds: float
    enabled: bool
    protocol_era: str | None
    state: str
    last_error: str | None
    last_seen_at: datetime | None
    catalogue_updated_at: datetime | None
    tools: list[ToolSummary]
    resources: int
    prompts: int
    created_at: datetime


ItemPattern = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        max_length=240,
        pattern=r"^[a-z][a-z0-9-]{0,31}__(\*|[^\s*]\S{0,199})$",
    ),
]
"""``<upstream>__<name>`` (one item, under its gateway name) or ``<upstream>__*`` (all of it)."""

MAX_ITEMS = 1000
"""Items one virtual server may list per kind (a tool list a client can still read)."""


class VirtualServerFields(BaseModel):
    """What a virtual server offers and to whom; omitted fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    title: Annotated[str, StringConstraints(max_length=200)] | None = None
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    tools: list[ItemPattern] | None = Field(default=None, max_length=MAX_ITEMS)
    resources: list[ItemPattern] | None = Field(default=None, max_length=MAX_ITEMS)
    prompts: list[ItemPattern] | None = Field(default=None, max_length=MAX_ITEMS)
    prefixed: bool | None = None
    allowed_users: list[Annotated[int, Field(gt=0)]] | None = Field(default=None, max_length=10000)
    allowed_organizations: list[Annotated[int, Field(gt=0)]] | None = Field(
        default=None, max_length=10000
    )
    enabled: bool | None = None


class VirtualServerCreate(VirtualServerFields):
    """A new virtual server: its name is its path, ``/servers/<name>/mcp``."""

    name: UpstreamName


class VirtualServerOut(BaseModel):
    """A virtual server as admins see it."""

    id: int
    name: str
    path: str
    title: str | None
    description: str | None
    tools: list[str]
    resources: list[str]
    prompts: list[str]
    prefixed: bool
    allowed_users: list[int]
    allowed_organizations: list[int]
    enabled: bool
    offered_tools: list[str]
    """The names its clients see in ``tools/list`` now (what the patterns match)."""
    created_at: datetime
    updated_at: datetime
