"""What one MCP path serves: all of the catalogue (``/mcp``) or a virtual server's choice.

A view translates between the names its clients see and the gateway's own names
(``<upstream>__<name>``, ``tollgate://<upstream>/<uri>``), so the hub routes, meters and
records every call the same way whichever path it came in on. A virtual server whose items
all come from one upstream may serve them under their original names and URIs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mcp_types as types

from tollgate.core.naming import SEPARATOR, exposed
from tollgate.gateway import naming
from tollgate.gateway.catalogue import Catalogue

WILDCARD = "*"
"""``<upstream>__*`` selects everything of that kind the upstream offers."""

Reference = types.PromptReference | types.ResourceTemplateReference


@dataclass(frozen=True)
class ServerSpec:
    """A virtual server as every process holds it."""

    name: str
    tools: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    prompts: tuple[str, ...] = ()
    prefixed: bool = True
    allowed_users: frozenset[int] = frozenset()
    allowed_organizations: frozenset[int] = frozenset()
    enabled: bool = True
    title: str | None = None

    @property
    def restricted(self) -> bool:
        """Whether only the listed users and organizations' members may use it."""
        return bool(self.allowed_users or self.allowed_organizations)

    def upstreams(self) -> set[str]:
        """Every upstream its patterns name."""
        return {p.partition(SEPARATOR)[0] for p in (*self.tools, *self.resources, *self.prompts)}

    def admits(self, user_id: int, organizations: frozenset[int]) -> bool:
        """Whether a user in ``organizations`` may use this server."""
        if not self.restricted:
            return True
        return user_id in self.allowed_users or bool(organizations & self.allowed_organizations)


def selects(patterns: tuple[str, ...], gateway_name: str) -> bool:
    """Whether ``gateway_name`` is one of ``patterns`` or under one of their wildcards."""
    for pattern in patterns:
        if pattern == gateway_name:
            return True
        if pattern.endswith(SEPARATOR + WILDCARD) and gateway_name.startswith(pattern[:-1]):
            return True
    return False


@dataclass
class View:
    """The catalogue as one path serves it; ``spec`` None is ``/mcp`` itself (everything)."""

    catalogue: Catalogue
    spec: ServerSpec | None = None
    _tools: types.ListToolsResult | None = field(default=None, repr=False)
    _tools_version: int = field(default=-1, repr=False)

    @property
    def _single(self) -> str | None:
        """The one upstream whose original names this view serves, if unprefixed."""
        if self.spec is None or self.spec.prefixed:
            return None
        upstreams = self.spec.upstreams()
        return next(iter(upstreams)) if len(upstreams) == 1 else None

    def _shown(self, gateway_name: str) -> str:
        single = self._single
        return gateway_name[len(single) + len(SEPARATOR) :] if single else gateway_name

    def _gateway_name(self, shown: str) -> str:
        single = self._single
        return exposed(single, shown) if single else shown

    def tools_result(self) -> types.ListToolsResult:
        """The ``tools/list`` answer of this path (rebuilt only when the catalogue changed)."""
        everything = self.catalogue.tools_result()
        if self.spec is None:
            return everything
        if self._tools is None or self._tools_version != self.catalogue.version:
            chosen = [t for t in everything.tools if selects(self.spec.tools, t.name)]
            if self._single:
                chosen = [t.model_copy(update={"name": self._shown(t.name)}) for t in chosen]
            self._tools = types.ListToolsResult(tools=chosen)
            self._tools_version = self.catalogue.version
        return self._tools

    def tool_name(self, shown: str) -> str | None:
        """The gateway name of a tool this path serves as ``shown``; None if it serves none."""
        gateway_name = self._gateway_name(shown)
        if self.spec is not None and not selects(self.spec.tools, gateway_name):
            return None
        return gateway_name

    def input_schema(self, shown: str) -> dict[str, object] | None:
        """A served tool's input schema (the SDK validates ``Mcp-Name`` calls against it)."""
        gateway_name = self.tool_name(shown)
        return self.catalogue.input_schema(gateway_name) if gateway_name else None

    def prompts(self) -> list[types.Prompt]:
        """The prompts this path serves."""
        found = self.catalogue.prompts()
        if self.spec is None:
            return found
        chosen = [p for p in found if selects(self.spec.prompts, p.name)]
        return [p.model_copy(update={"name": self._shown(p.name)}) for p in chosen]

    def prompt_name(self, shown: str) -> str | None:
        """The gateway name of a prompt this path serves as ``shown``."""
        gateway_name = self._gateway_name(shown)
        if self.spec is not None and not selects(self.spec.prompts, gateway_name):
            return None
        return gateway_name

    def resources(self) -> list[types.Resource]:
        """The resources this path serves."""
        found = self.catalogue.resources()
        if self.spec is None:
            return found
        return [self._shown_resource(r) for r in found if selects(self.spec.resources, r.name)]

    def resource_templates(self) -> list[types.ResourceTemplate]:
        """The resource templates this path serves."""
        found = self.catalogue.resource_templates()
        if self.spec is None:
            return found
        return [self._shown_template(t) for t in found if selects(self.spec.resources, t.name)]

    def _shown_resource(self, resource: types.Resource) -> types.Resource:
        if not self._single:
            return resource
        return resource.model_copy(
            update={"uri": self.shown_uri(str(resource.uri)), "name": self._shown(resource.name)}
        )

    def _shown_template(self, template: types.ResourceTemplate) -> types.ResourceTemplate:
        if not self._single:
            return template
        parts = naming.split_resource_uri(template.uri_template)
        original = parts[1] if parts else template.uri_template
        return template.model_copy(
            update={"uri_template": original, "name": self._shown(template.name)}
        )

    def resource_uri(self, shown: str) -> str | None:
        """The gateway URI of a resource this path serves as ``shown``: a virtual server
        serves any URI of the upstreams its resource patterns name."""
        single = self._single
        gateway_uri = naming.resource_uri(single, shown) if single else shown
        return gateway_uri if self._serves_resources_of(gateway_uri) else None

    def _serves_resources_of(self, gateway_uri: str) -> bool:
        """Whether this path serves resources of the upstream a gateway URI names."""
        if self.spec is None:
            return True
        parts = naming.split_resource_uri(gateway_uri)
        return parts is not None and any(
            p.startswith(parts[0] + SEPARATOR) for p in self.spec.resources
        )

    def shown_uri(self, gateway_uri: str) -> str:
        """A gateway URI as this path's clients see it."""
        if not self._single:
            return gateway_uri
        parts = naming.split_resource_uri(gateway_uri)
        return parts[1] if parts else gateway_uri

    def reference(self, shown: Reference) -> Reference | None:
        """A completion reference in gateway names; None if this path serves no such item."""
        if isinstance(shown, types.PromptReference):
            name = self.prompt_name(shown.name)
            return shown.model_copy(update={"name": name}) if name else None
        single = self._single
        uri = naming.resource_template(single, shown.uri) if single else shown.uri
        if not self._serves_resources_of(uri):
            return None
        return shown.model_copy(update={"uri": uri})
