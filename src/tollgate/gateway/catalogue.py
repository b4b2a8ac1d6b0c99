"""The federated catalogue: every upstream's tools, resources and prompts, under gateway names.

Held in memory by each process; lookups on the call path are dictionary reads, and the
``tools/list`` answer is built once per change, not per request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import mcp_types as types

from tollgate.core.naming import exposed
from tollgate.gateway import naming

if TYPE_CHECKING:  # the records import this module's listing and policy
    from tollgate.gateway.upstreams import Upstreams


@dataclass(frozen=True)
class UpstreamPolicy:
    """What an admin decided about an upstream's tools: prices and which are offered."""

    name: str
    price: int
    tool_prices: dict[str, int] = field(default_factory=dict)
    allowed: frozenset[str] = frozenset()
    denied: frozenset[str] = frozenset()
    enabled: bool = True

    def offers(self, tool: str) -> bool:
        """Whether ``tool`` passes the allow and deny lists."""
        return tool not in self.denied and (not self.allowed or tool in self.allowed)

    def price_of(self, tool: str) -> int:
        """Credits one call of ``tool`` costs."""
        return self.tool_prices.get(tool, self.price)


@dataclass
class UpstreamListing:
    """What one upstream offers, as it last said."""

    tools: list[types.Tool] = field(default_factory=list)
    resources: list[types.Resource] = field(default_factory=list)
    templates: list[types.ResourceTemplate] = field(default_factory=list)
    prompts: list[types.Prompt] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON form to keep in the database."""
        dump = {"mode": "json", "by_alias": True, "exclude_none": True}
        return {
            "tools": [t.model_dump(**dump) for t in self.tools],  # type: ignore[arg-type]
            "resources": [r.model_dump(**dump) for r in self.resources],  # type: ignore[arg-type]
            "templates": [r.model_dump(**dump) for r in self.templates],  # type: ignore[arg-type]
            "prompts": [p.model_dump(**dump) for p in self.prompts],  # type: ignore[arg-type]
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> UpstreamListing:
        """Read back what :meth:`to_json` wrote."""
        data = data or {}
        return cls(
            tools=[types.Tool.model_validate(t) for t in data.get("tools", [])],
            resources=[types.Resource.model_validate(r) for r in data.get("resources", [])],
            templates=[types.ResourceTemplate.model_validate(r) for r in data.get("templates", [])],
            prompts=[types.Prompt.model_validate(p) for p in data.get("prompts", [])],
        )


@dataclass(frozen=True)
class ToolEntry:
    """A tool as the gateway routes and prices it."""

    upstream: str
    original: str
    price: int
    tool: types.Tool


class Catalogue:
    """Every available upstream's offer, under gateway names (kept in the upstreams' records)."""

    def __init__(self, upstreams: Upstreams) -> None:
        self._upstreams = upstreams
        self._tools: dict[str, ToolEntry] = {}
        self._tools_result: types.ListToolsResult = types.ListToolsResult(tools=[])
        self.version = 0
        """Counts the rebuilds, so views built from the catalogue know when to rebuild."""

    def set_listing(self, upstream: str, listing: UpstreamListing) -> None:
        """Replace what ``upstream`` offers."""
        self._upstreams.record(upstream).listing = listing
        self._rebuild()

    def set_policy(self, policy: UpstreamPolicy) -> None:
        """Replace the prices and lists of an upstream."""
        self._upstreams.record(policy.name).policy = policy
        self._rebuild()

    def set_available(self, upstream: str, available: bool) -> None:
        """Show or hide an upstream's offer (down or disabled upstreams are hidden)."""
        record = self._upstreams.get(upstream)
        if available == (record is not None and record.available):
            return
        self._upstreams.record(upstream).available = available
        self._rebuild()

    def remove(self, upstream: str) -> None:
        """Forget an upstream's offer."""
        record = self._upstreams.get(upstream)
        if record is not None:
            record.listing, record.policy, record.available = None, None, False
        self._rebuild()

    def listing(self, upstream: str) -> UpstreamListing:
        """What ``upstream`` last offered (empty if unknown)."""
        record = self._upstreams.get(upstream)
        if record is None or record.listing is None:
            return UpstreamListing()
        return record.listing

    def _visible(self) -> list[tuple[str, UpstreamListing, UpstreamPolicy]]:
        visible = []
        for name in sorted(self._upstreams):
            record = self._upstreams[name]
            listing, policy = record.listing, record.policy
            if record.available and listing is not None and policy is not None and policy.enabled:
                visible.append((name, listing, policy))
        return visible

    def _rebuild(self) -> None:
        tools: dict[str, ToolEntry] = {}
        for name, listing, policy in self._visible():
            for tool in listing.tools:
                if policy.offers(tool.name):
                    gateway_name = exposed(name, tool.name)
                    renamed = tool.model_copy(update={"name": gateway_name})
                    tools[gateway_name] = ToolEntry(
                        name, tool.name, policy.price_of(tool.name), renamed
                    )
        self._tools = tools
        self._tools_result = types.ListToolsResult(tools=[e.tool for e in tools.values()])
        self.version += 1

    def tool(self, gateway_name: str) -> ToolEntry | None:
        """The routed tool called ``gateway_name``, if offered now."""
        return self._tools.get(gateway_name)

    def tools_result(self) -> types.ListToolsResult:
        """The ``tools/list`` answer (built once per change)."""
        return self._tools_result

    def input_schema(self, gateway_name: str) -> dict[str, Any] | None:
        """A tool's input schema, for the SDK's header validation."""
        entry = self._tools.get(gateway_name)
        return entry.tool.input_schema if entry else None

    def resources(self) -> list[types.Resource]:
        """Every visible resource, with mapped URIs and names."""
        return [
            r.model_copy(
                update={
                    "uri": naming.resource_uri(name, str(r.uri)),
                    "name": exposed(name, r.name),
                }
            )
            for name, listing, _ in self._visible()
            for r in listing.resources
        ]

    def resource_templates(self) -> list[types.ResourceTemplate]:
        """Every visible resource template, mapped like the resources."""
        return [
            t.model_copy(
                update={
                    "uri_template": naming.resource_template(name, t.uri_template),
                    "name": exposed(name, t.name),
                }
            )
            for name, listing, _ in self._visible()
            for t in listing.templates
        ]

    def prompts(self) -> list[types.Prompt]:
        """Every visible prompt, under gateway names."""
        return [
            p.model_copy(update={"name": exposed(name, p.name)})
            for name, listing, _ in self._visible()
            for p in listing.prompts
        ]

    def is_visible(self, upstream: str) -> bool:
        """Whether an upstream's offer is shown now."""
        record = self._upstreams.get(upstream)
        if record is None or not record.available:
            return False
        return record.policy is not None and record.policy.enabled

    def _policy(self, upstream: str) -> UpstreamPolicy | None:
        record = self._upstreams.get(upstream)
        return record.policy if record is not None else None
