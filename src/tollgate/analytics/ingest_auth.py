"""Who may post analytics: admins (JWT, or an admin's access token with the ``ingest`` scope),
or a request signed with ``MCP_WEBHOOK_SECRET`` (HMAC-SHA256 over timestamp and body).

Signed requests carry ``X-Tollgate-Timestamp`` (Unix seconds) and ``X-Tollgate-Signature``
(``sha256=<hex of HMAC(secret, "<timestamp>.<body>")>``); stale timestamps and replayed
signatures are refused.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from typing import Annotated

from fastapi import Depends, Request

from tollgate.core.cache import Cache
from tollgate.core.deps import ClientAddress, RuntimeDep, SessionDep
from tollgate.core.errors import Forbidden, Unauthorized
from tollgate.core.settings import Settings
from tollgate.identity.credentials import TokenCaller, user_or_token
from tollgate.identity.deps import CredentialsDep, bearer_token
from tollgate.identity.permissions import permissions_for

SIGNATURE_TOLERANCE_SECONDS = 300
"""A signed request older (or further in the future) than this is refused."""

TIMESTAMP_HEADER = "x-tollgate-timestamp"
SIGNATURE_HEADER = "x-tollgate-signature"

TIMESTAMP_PATTERN = re.compile(r"[0-9]{1,12}")
"""Unix seconds in ASCII digits: twelve reach the year 33658, far past any fresh request, and
keep ``int()`` and the clock arithmetic away from numbers too big to convert."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


async def check_signature(request: Request, settings: Settings, cache: Cache) -> None:
    """Accept a correctly signed, fresh, first-seen request; Unauthorized otherwise."""
    timestamp = request.headers.get(TIMESTAMP_HEADER, "")
    signature = request.headers.get(SIGNATURE_HEADER, "")
    if not settings.mcp_webhook_secret:
        raise Unauthorized("Signed ingestion is not configured", code="signature_not_configured")
    if not TIMESTAMP_PATTERN.fullmatch(timestamp):
        raise Unauthorized("Missing or invalid timestamp", code="invalid_signature")
    if abs(time.time() - int(timestamp)) > SIGNATURE_TOLERANCE_SECONDS:
        raise Unauthorized("Stale request timestamp", code="stale_signature")
    expected = sign(settings.mcp_webhook_secret, timestamp, await request.body())
    if not hmac.compare_digest(expected, signature):
        raise Unauthorized("Invalid signature", code="invalid_signature")
    if not await cache.add(f"ingest-signature:{signature}", "1", SIGNATURE_TOLERANCE_SECONDS * 2):
        raise Unauthorized("Replayed request", code="replayed_signature")


async def ingestor(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    credentials: CredentialsDep,
    address: ClientAddress,
) -> str:
    """Who is posting: ``signed``, ``token:<prefix>`` or the admin's email."""
    if request.headers.get(SIGNATURE_HEADER):
        await check_signature(request, runtime.settings, runtime.cache)
        return "signed"
    caller = await user_or_token(
        credentials, bearer_token(request), session=session, address=address
    )
    token = caller.token if isinstance(caller, TokenCaller) else None
    if token is not None and "ingest" not in token.scopes:
        raise Forbidden("This token lacks the 'ingest' scope", code="insufficient_scope")
    # A token acts for its user: it never grants more than the user holds.
    if "analytics.write" not in permissions_for(caller.user.role, caller.user.is_superuser):
        raise Forbidden("This needs the 'analytics.write' permission", code="permission_denied")
    return caller.user.email if token is None else f"token:{token.token_prefix}"


Ingestor = Annotated[str, Depends(ingestor)]
