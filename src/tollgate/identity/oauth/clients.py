"""Who an OAuth client is: registered clients (dynamic or by an admin), and clients named by
the URL of their Client ID Metadata Document, fetched with SSRF guards, limits and a cache.

Redirect URIs follow OAuth 2.1: HTTPS, or ``http`` on a loopback address only, or (for native
apps, RFC 8252) a private-use scheme; never a fragment. They are compared exactly.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx
from mcp.shared.auth import OAuthClientInformationFull
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tollgate.core.cache import Cache
from tollgate.core.crypto import hash_token
from tollgate.identity.oauth.models import OAuthClient

logger = logging.getLogger(__name__)

METADATA_MAX_BYTES = 5 * 1024
"""A Client ID Metadata Document larger than this is refused (the draft's suggested limit)."""

METADATA_FETCH_SECONDS = 5.0
"""How long fetching a metadata document may take in all, so a slow host cannot hold us."""

METADATA_CACHE_SECONDS = 300
"""How long a fetched document is reused when its response sets no shorter ``max-age``."""

METADATA_CACHE_MIN_SECONDS = 30
"""A document is cached at least this long, whatever its ``max-age`` says."""

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
"""Hosts that are this machine: allowed over plain ``http`` in redirect URIs (RFC 8252)."""

FORBIDDEN_SCHEMES = frozenset({"javascript", "data", "file", "vbscript", "blob", "about"})
"""Schemes a redirect URI may never use: they run or read things in the user's browser."""

PRIVATE_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")
"""What a native app's private-use redirect scheme looks like (RFC 8252 section 7.1)."""


class ClientRefused(Exception):
    """A client id or client metadata Tollgate will not use; ``error`` is the OAuth code."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


class TollgateClient(OAuthClientInformationFull):
    """A client as the SDK's handlers see it. Tollgate issues no scopes of its own: whatever
    a client asks for is recorded on the grant and changes nothing about what it may do."""

    def validate_scope(self, requested_scope: str | None) -> list[str] | None:
        """Any requested scope is accepted (and recorded)."""
        return requested_scope.split() if requested_scope else None


@dataclass(frozen=True)
class KnownClient:
    """A client and, for a confidential one, the hash of its secret."""

    info: TollgateClient
    secret_hash: str | None


def redirect_uri_problem(uri: str, application_type: str | None) -> str | None:
    """Why ``uri`` cannot be a redirect URI, or None when it can."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if parts.fragment or "#" in uri:
        return "a redirect URI must not have a fragment"
    if scheme == "https":
        return None if parts.hostname else "an https redirect URI needs a host"
    if scheme == "http":
        if (parts.hostname or "") in LOOPBACK_HOSTS:
            return None
        return "http redirect URIs are allowed on loopback addresses only; use https"
    if application_type == "web":
        return "a web client's redirect URIs must use https"
    if scheme in FORBIDDEN_SCHEMES or not PRIVATE_SCHEME.match(scheme):
        return f"the scheme {scheme or '(none)'} cannot be a redirect URI"
    return None


def check_redirect_uris(uris: list[str], application_type: str | None) -> None:
    """ClientRefused (``invalid_redirect_uri``) unless every URI is acceptable."""
    if not uris:
        raise ClientRefused("invalid_redirect_uri", "at least one redirect URI is required")
    for uri in uris:
        problem = redirect_uri_problem(uri, application_type)
        if problem is not None:
            raise ClientRefused("invalid_redirect_uri", f"{uri}: {problem}")


def looks_like_metadata_url(client_id: str) -> bool:
    """Whether ``client_id`` names a Client ID Metadata Document (an http(s) URL)."""
    return client_id.startswith(("https://", "http://"))


async def stored_client(session: AsyncSession, client_id: str) -> KnownClient | None:
    """A registered client by id."""
    row = (
        await session.execute(select(OAuthClient).where(OAuthClient.client_id == client_id))
    ).scalar_one_or_none()
    if row is None:
        return None
    info = TollgateClient.model_validate({**row.client_metadata, "client_id": row.client_id})
    return KnownClient(info=info, secret_hash=row.secret_hash)


async def store_client(
    session: AsyncSession,
    info: OAuthClientInformationFull,
    *,
    kind: str,
    created_by: int | None = None,
) -> OAuthClient:
    """Keep a registered client; its secret only as a hash."""
    metadata = info.model_dump(
        mode="json", exclude={"client_id", "client_secret"}, exclude_none=True
    )
    row = OAuthClient(
        client_id=info.client_id,
        kind=kind,
        client_name=info.client_name,
        secret_hash=hash_token(info.client_secret) if info.client_secret else None,
        client_metadata=metadata,
        created_by=created_by,
    )
    session.add(row)
    await session.flush()
    return row


class MetadataDocuments:
    """Client ID Metadata Documents, fetched over HTTPS with SSRF guards and cached."""

    def __init__(self, cache: Cache, *, allow_loopback: bool) -> None:
        self.cache = cache
        self.allow_loopback = allow_loopback

    async def client(self, client_id: str) -> KnownClient:
        """The public client ``client_id`` describes; ClientRefused (``invalid_client``)."""
        entry = f"oauth-cimd:{hash_token(client_id)}"
        cached = await self.cache.get(entry)
        if cached is not None:
            document: dict[str, Any] = json.loads(cached)
        else:
            document, max_age = await self._fetch(client_id)
            await self.cache.set(entry, json.dumps(document), max_age)
        return KnownClient(info=client_from_document(client_id, document), secret_hash=None)

    async def _fetch(self, url: str) -> tuple[dict[str, Any], float]:
        parts = self._checked_url(url)
        host = parts.hostname or ""
        address = await self._public_address(host, parts.port or 443)
        pinned = f"[{address}]" if ":" in address else address
        netloc = f"{pinned}:{parts.port}" if parts.port else pinned
        target = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
        headers = {"Host": parts.netloc, "Accept": "application/json"}
        try:
            with anyio.fail_after(METADATA_FETCH_SECONDS):
                body, max_age = await _read_limited(target, headers, host)
        except (httpx.HTTPError, TimeoutError) as exc:
            raise ClientRefused(
                "invalid_client", f"the client metadata document could not be fetched ({exc!r})"
            ) from exc
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise ClientRefused("invalid_client", "the client metadata is not JSON") from exc
        if not isinstance(document, dict):
            raise ClientRefused("invalid_client", "the client metadata is not a JSON object")
        return document, max_age

    def _checked_url(self, url: str) -> Any:
        parts = urlsplit(url)
        loopback = (parts.hostname or "") in LOOPBACK_HOSTS
        secure = parts.scheme == "https" or (
            parts.scheme == "http" and loopback and self.allow_loopback
        )
        if not secure:
            raise ClientRefused("invalid_client", "a client id URL must use https")
        if parts.fragment or parts.username or parts.password or parts.path in ("", "/"):
            raise ClientRefused(
                "invalid_client", "a client id URL needs a path and no fragment or credentials"
            )
        return parts

    async def _public_address(self, host: str, port: int) -> str:
        """The address to fetch from: a public one (or loopback, when allowed for tests)."""
        try:
            found = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise ClientRefused("invalid_client", f"the host {host} does not resolve") from exc
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]
        for address in addresses:
            allowed = address.is_global or (self.allow_loopback and address.is_loopback)
            if not allowed:
                raise ClientRefused("invalid_client", f"the host {host} is not on a public address")
        return str(addresses[0])


async def _read_limited(url: str, headers: dict[str, str], host: str) -> tuple[bytes, float]:
    """GET ``url`` (no redirects), at most :data:`METADATA_MAX_BYTES`; the body and how long
    it may be cached. TLS is verified against ``host`` though the URL names its address."""
    async with (
        httpx.AsyncClient(follow_redirects=False, timeout=METADATA_FETCH_SECONDS) as http,
        http.stream("GET", url, headers=headers, extensions={"sni_hostname": host}) as response,
    ):
        if response.status_code != 200:
            raise ClientRefused(
                "invalid_client",
                f"the client metadata document answered HTTP {response.status_code}",
            )
        body = b""
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > METADATA_MAX_BYTES:
                raise ClientRefused("invalid_client", "the client metadata document is too large")
        return body, _max_age(response.headers.get("cache-control", ""))


def _max_age(cache_control: str) -> float:
    match = re.search(r"max-age=(\d+)", cache_control)
    seconds = int(match.group(1)) if match else METADATA_CACHE_SECONDS
    return float(max(METADATA_CACHE_MIN_SECONDS, min(seconds, METADATA_CACHE_SECONDS)))


def client_from_document(client_id: str, document: dict[str, Any]) -> TollgateClient:
    """The public client a metadata document describes, after checking it names itself."""
    if document.get("client_id") != client_id:
        raise ClientRefused(
            "invalid_client", "the client metadata document's client_id differs from its URL"
        )
    if document.get("client_secret") is not None:
        raise ClientRefused("invalid_client", "a client metadata document must hold no secret")
    method = document.get("token_endpoint_auth_method") or "none"
    if method != "none":
        raise ClientRefused(
            "invalid_client", "clients named by a metadata document are public ('none')"
        )
    uris = document.get("redirect_uris")
    if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
        raise ClientRefused("invalid_client", "the client metadata needs redirect_uris")
    try:
        check_redirect_uris(uris, document.get("application_type"))
    except ClientRefused as refused:
        raise ClientRefused("invalid_client", refused.description) from None
    try:
        return TollgateClient.model_validate(
            {**document, "token_endpoint_auth_method": "none", "client_id": client_id}
        )
    except ValidationError as exc:
        raise ClientRefused("invalid_client", "the client metadata is not valid") from exc
