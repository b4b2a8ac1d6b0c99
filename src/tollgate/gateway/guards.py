"""What an upstream may be: who may run commands on this host (stdio), which addresses an
upstream URL may reach, and never this Tollgate itself."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio

from tollgate.core.errors import Forbidden, Unprocessable
from tollgate.core.settings import Settings
from tollgate.gateway.addresses import default_base_url

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

STDIO_FIELDS = frozenset({"command", "args", "env"})
"""Fields that decide what a stdio upstream runs on this host."""

DEFAULT_PORTS = {"http": 80, "https": 443}


class UpstreamIsSelf(Unprocessable):
    """The upstream is this Tollgate: its tools would list themselves without end."""

    code = "upstream_is_self"
    message = "This upstream is this Tollgate itself; it would list its own tools without end"


def check_stdio_allowed(settings: Settings, *, is_superuser: bool) -> None:
    """Refuse to create or change a stdio upstream through the API unless the operator
    allowed it (``TOLLGATE_ALLOW_STDIO_UPSTREAMS``) and the actor is a superuser."""
    if not settings.allow_stdio_upstreams:
        raise Forbidden(
            "stdio upstreams run commands on this host; set TOLLGATE_ALLOW_STDIO_UPSTREAMS "
            "to manage them through the API, or use `tollgate upstream add` on the host",
            code="stdio_upstreams_disabled",
        )
    if not is_superuser:
        raise Forbidden(
            "Only a superuser may add or change a stdio upstream", code="superuser_required"
        )


@dataclass(frozen=True)
class Target:
    """Where an upstream URL leads: its host, port and the addresses the host resolves to."""

    host: str
    port: int
    addresses: tuple[IPAddress, ...]


def _plain(address: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address (``::ffff:a.b.c.d``) as the IPv4 address it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


async def resolve(url: str) -> Target:
    """The host, port and resolved addresses of ``url`` (422 when it has none)."""
    parts = urlsplit(url)
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, 80)
    except ValueError as exc:
        raise Unprocessable("The upstream URL has an invalid port", code="invalid_url") from exc
    host = (parts.hostname or "").lower()
    if not host:
        raise Unprocessable("The upstream URL has no host", code="invalid_url")
    try:
        found = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Unprocessable(
            f"The upstream host {host} does not resolve", code="upstream_unresolvable"
        ) from exc
    addresses = tuple(
        dict.fromkeys(_plain(ipaddress.ip_address(str(info[4][0]).split("%")[0])) for info in found)
    )
    return Target(host, port, addresses)


def _networks(entries: Iterable[str]) -> list[IPNetwork]:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            continue
    return networks


def _name_matches(host: str, entries: Iterable[str]) -> bool:
    for entry in (e.strip().lower() for e in entries):
        if entry.startswith("*.") and host.endswith(entry[1:]):
            return True
        if host == entry:
            return True
    return False


def check_address_rules(settings: Settings, target: Target) -> None:
    """Refuse a target that resolves into a denied network, or, when an allow list is set,
    one that neither is named in it nor resolves only into its networks."""
    denied = _networks(settings.upstream_denied_networks)
    for address in target.addresses:
        if any(address in network for network in denied if network.version == address.version):
            raise Unprocessable(
                f"The upstream host {target.host} resolves to a denied address ({address})",
                code="upstream_address_denied",
            )
    allowed = settings.upstream_allowed_hosts
    if not allowed or _name_matches(target.host, allowed):
        return
    networks = _networks(allowed)
    if not all(
        any(address in n for n in networks if n.version == address.version)
        for address in target.addresses
    ):
        raise Unprocessable(
            f"The upstream host {target.host} is not in TOLLGATE_UPSTREAM_ALLOWED_HOSTS",
            code="upstream_address_not_allowed",
        )


def _own_endpoints(settings: Settings, served_at: tuple[str, int] | None) -> list[tuple[str, int]]:
    own = [(settings.host, settings.port)]
    if served_at is not None:
        own.append(served_at)
    for base in (settings.public_url, default_base_url(settings)):
        parts = urlsplit(base)
        if parts.hostname:
            own.append((parts.hostname.lower(), parts.port or DEFAULT_PORTS.get(parts.scheme, 80)))
    return own


async def _is_own(target: Target, host: str, port: int) -> bool:
    if port != target.port:
        return False
    if host.lower() == target.host:
        return True
    try:
        own = await resolve(f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}")
    except Unprocessable:
        return False
    # Listening on every address (0.0.0.0) or on loopback: loopback on our port is us.
    local = any(a.is_unspecified or a.is_loopback for a in own.addresses)
    return any(a in own.addresses or (a.is_loopback and local) for a in target.addresses)


async def check_not_self(
    settings: Settings, target: Target, served_at: tuple[str, int] | None = None
) -> None:
    """Refuse a target that is this server: its public URL, its listening address (from the
    settings, or the socket a request came in on), or a loopback address on its port."""
    for host, port in _own_endpoints(settings, served_at):
        if await _is_own(target, host, port):
            raise UpstreamIsSelf()


async def check_upstream_url(
    settings: Settings, url: str, served_at: tuple[str, int] | None = None
) -> None:
    """Every check an upstream URL passes before it is stored: resolved against the address
    rules, and not this server itself."""
    target = await resolve(url)
    check_address_rules(settings, target)
    await check_not_self(settings, target, served_at)
