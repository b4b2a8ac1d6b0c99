"""How upstream names become gateway names: ``<upstream>__<tool>`` and mapped resource URIs."""

from __future__ import annotations

from urllib.parse import quote, unquote

from tollgate.core.naming import SEPARATOR

__all__ = [
    "RESOURCE_SCHEME",
    "SEPARATOR",
    "resource_template",
    "resource_uri",
    "split",
    "split_resource_uri",
]

RESOURCE_SCHEME = "tollgate://"


def split(name: str) -> tuple[str, str] | None:
    """(upstream, original name) of a gateway name, or None when it has no upstream part."""
    upstream, separator, original = name.partition(SEPARATOR)
    if not separator or not upstream or not original:
        return None
    return upstream, original


def resource_uri(upstream: str, uri: str) -> str:
    """A resource URI that names its upstream and survives the round trip."""
    return f"{RESOURCE_SCHEME}{upstream}/{quote(uri, safe='')}"


def resource_template(upstream: str, template: str) -> str:
    """A URI template mapped like :func:`resource_uri`, its ``{placeholders}`` kept usable."""
    return f"{RESOURCE_SCHEME}{upstream}/{quote(template, safe='{}')}"


def split_resource_uri(uri: str) -> tuple[str, str] | None:
    """(upstream, original URI) of a mapped resource URI, or None for anything else."""
    if not uri.startswith(RESOURCE_SCHEME):
        return None
    upstream, slash, encoded = uri[len(RESOURCE_SCHEME) :].partition("/")
    if not slash or not upstream or not encoded:
        return None
    return upstream, unquote(encoded)
