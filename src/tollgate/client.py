"""``CredentialProvider``: lease credentials from a Tollgate broker and keep them fresh.

    async with CredentialProvider(api_url, token) as provider:
        await provider.bootstrap(["todoist", "jira"], ttl=3600, server_id="mcp-server-1")
        jira = await provider.get_credentials("jira")

The lease is renewed when less than ``renew_margin`` (ten minutes) remains, either on the
next ``get_credentials`` or by an optional background task; when it can no longer be
renewed a new lease is taken; closing the provider revokes the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

logger = logging.getLogger(__name__)

DEFAULT_RENEW_MARGIN = timedelta(minutes=10)
"""Seed 001's rule: renew when less than ten minutes remain."""

REQUEST_TIMEOUT_SECONDS = 10.0
"""A broker that does not answer within this is treated as unreachable."""

RELEASE_CODES = frozenset(
    {"lease_expired", "lease_revoked", "max_renewals_reached", "max_lifetime_reached"}
)
"""Renewal refusals after which only a new lease helps."""


class BrokerError(Exception):
    """The broker refused a request; ``status`` and ``code`` say why."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class AuthenticationError(BrokerError):
    """401: the token is unknown, revoked, inactive or expired."""


class LeaseNotFound(BrokerError):
    """404: the lease does not exist, or is not ours."""


class CredentialsUnavailable(BrokerError):
    """422: some services have no credential for this token's user."""

    def __init__(self, status: int, code: str, message: str, services: list[str]) -> None:
        super().__init__(status, code, message)
        self.services = services


@dataclass
class LeaseState:
    """The lease the provider holds."""

    lease_id: str
    credentials: dict[str, dict[str, Any]]
    expires_at: datetime
    services: list[str]
    ttl: int
    server_id: str
    renewal_count: int = 0
    history: list[str] = field(default_factory=list)


def _parse_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        detail = response.json().get("detail", {})
    except ValueError:
        detail = {}
    if not isinstance(detail, dict):
        detail = {"message": str(detail)}
    code, message = str(detail.get("code", "error")), str(detail.get("message", response.text))
    status = response.status_code
    if status == 401:
        raise AuthenticationError(status, code, message)
    if status == 404:
        raise LeaseNotFound(status, code, message)
    if status == 422:
        raise CredentialsUnavailable(status, code, message, list(detail.get("services", [])))
    raise BrokerError(status, code, message)


class CredentialProvider:
    """Holds one lease for an MCP server and keeps it valid."""

    def __init__(
        self,
        api_url: str | None = None,
        token: str | None = None,
        *,
        renew_margin: timedelta = DEFAULT_RENEW_MARGIN,
        auto_refresh: bool = False,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.api_url = (api_url or os.environ.get("MCP_API_URL", "")).rstrip("/")
        self.token = token or os.environ.get("MCP_TOKEN", "")
        if not self.api_url or not self.token:
            raise ValueError("give api_url and token (or set MCP_API_URL and MCP_TOKEN)")
        self.renew_margin = renew_margin
        self.auto_refresh = auto_refresh
        self._own_client = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=REQUEST_TIMEOUT_SECONDS)
        self._headers = {"Authorization": f"Bearer {self.token}"}
        self._lock = asyncio.Lock()
        self._refresher: asyncio.Task[None] | None = None
        self.lease: LeaseState | None = None
        self.me: dict[str, Any] = {}

    async def __aenter__(self) -> CredentialProvider:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def bootstrap(
        self, services: list[str], ttl: int = 3600, server_id: str = "mcp-server"
    ) -> LeaseState:
        """Check the token (``/api/mcp/me``) and take a lease for ``services``."""
        response = await self._http.get(f"{self.api_url}/api/mcp/me", headers=self._headers)
        _raise_for(response)
        self.me = response.json()
        async with self._lock:
            self.lease = await self._new_lease(services, ttl, server_id)
        if self.auto_refresh and self._refresher is None:
            self._refresher = asyncio.create_task(self._refresh_loop(), name="lease-refresh")
        return self.lease

    async def _new_lease(self, services: list[str], ttl: int, server_id: str) -> LeaseState:
        response = await self._http.post(
            f"{self.api_url}/api/mcp/credentials/lease",
            headers=self._headers,
            json={"services": services, "ttl": ttl, "server_id": server_id},
        )
        _raise_for(response)
        data = response.json()
        return LeaseState(
            lease_id=data["lease_id"],
            credentials=data["credentials"],
            expires_at=_parse_time(data["expires_at"]),
            services=list(services),
            ttl=ttl,
            server_id=server_id,
        )

    def _current(self) -> LeaseState:
        if self.lease is None:
            raise RuntimeError("call bootstrap() first")
        return self.lease

    def remaining(self) -> timedelta:
        """Time left on the lease."""
        return self._current().expires_at - datetime.now(UTC)

    async def get_credentials(self, service: str) -> dict[str, Any] | None:
        """The credentials for ``service``, renewing the lease first if it is about to end."""
        if self.remaining() < self.renew_margin:
            await self.refresh()
        return self._current().credentials.get(service)

    async def refresh(self) -> LeaseState:
        """Renew the lease; take a new one when it can no longer be renewed."""
        async with self._lock:
            lease = self._current()
            if lease.expires_at - datetime.now(UTC) >= self.renew_margin:
                return lease
            try:
                await self._renew(lease)
            except LeaseNotFound:
                await self._replace(lease)
            except BrokerError as refused:
                if refused.code not in RELEASE_CODES:
                    raise
                await self._replace(lease)
            return self._current()

    async def _renew(self, lease: LeaseState) -> None:
        response = await self._http.post(
            f"{self.api_url}/api/mcp/credentials/lease/{lease.lease_id}/renew",
            headers=self._headers,
        )
        _raise_for(response)
        data = response.json()
        lease.expires_at = _parse_time(data["expires_at"])
        lease.renewal_count = int(data["renewal_count"])

    async def _replace(self, old: LeaseState) -> None:
        fresh = await self._new_lease(old.services, old.ttl, old.server_id)
        fresh.history = [*old.history, old.lease_id]
        self.lease = fresh
        with contextlib.suppress(BrokerError, httpx.HTTPError):
            await self._revoke(old.lease_id, "replaced by a new lease")

    async def _refresh_loop(self) -> None:
        while True:
            wait = (self.remaining() - self.renew_margin).total_seconds()
            await asyncio.sleep(max(wait, 0.05))
            try:
                await self.refresh()
            except (BrokerError, httpx.HTTPError) as exc:
                logger.warning("lease refresh failed: %s", exc)
                await asyncio.sleep(min(max(self.remaining().total_seconds() / 10, 0.05), 60))

    async def _revoke(self, lease_id: str, reason: str) -> None:
        response = await self._http.request(
            "DELETE",
            f"{self.api_url}/api/mcp/credentials/lease/{lease_id}",
            headers=self._headers,
            json={"reason": reason},
        )
        _raise_for(response)

    async def close(self, reason: str = "Server shutdown") -> None:
        """Stop refreshing, revoke the lease, and close the HTTP client if it is ours."""
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        if self.lease is not None:
            try:
                await self._revoke(self.lease.lease_id, reason)
            finally:
                self.lease = None
                if self._own_client:
                    await self._http.aclose()
        elif self._own_client:
            await self._http.aclose()
