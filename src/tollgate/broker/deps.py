"""Who is calling the broker: a user's JWT, or an access token acting for its user."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from tollgate.broker import audit
from tollgate.core.deps import ClientAddress, SessionDep
from tollgate.core.errors import Forbidden
from tollgate.core.runtime import Runtime
from tollgate.identity.credentials import TokenCaller, TokenRefusalHook, user_or_token
from tollgate.identity.deps import BearerToken, CredentialsDep
from tollgate.identity.models import AccessToken, User

logger = logging.getLogger(__name__)

AUTH_FAILURE_AUDIT_INTERVAL_SECONDS = 60
"""At most one ``mcp_auth_failed`` row per client address and reason this often: a flood
of bad tokens must not flood the audit trail (the rest are only counted in the log)."""


@dataclass(frozen=True)
class Principal:
    """The caller: a user, and the access token they came with (None for a JWT)."""

    user: User
    token: AccessToken | None
    actor: audit.Actor

    def has_scope(self, scope: str) -> bool:
        """JWTs carry every scope; a ``lease`` token may also ``read``."""
        if self.token is None:
            return True
        granted = set(self.token.scopes)
        return scope in granted or (scope == "read" and "lease" in granted)


async def principal(
    token: BearerToken, session: SessionDep, credentials: CredentialsDep, address: ClientAddress
) -> Principal:
    """Authenticate the bearer: a user's JWT, or an access token acting for its user.

    Refused tokens are audited (by :func:`audit_token_refusal`) with the prefix only.
    """
    caller = await user_or_token(credentials, token, session=session, address=address)
    if not isinstance(caller, TokenCaller):
        return Principal(
            caller.user, None, audit.Actor(user_id=caller.user.id, client_address=address)
        )
    actor = audit.Actor(
        user_id=caller.user.id, token_prefix=caller.token.token_prefix, client_address=address
    )
    return Principal(caller.user, caller.token, actor)


def audit_token_refusal(runtime: Runtime) -> TokenRefusalHook:
    """What happens when an access token is refused: the first refusal of an interval from
    an address, for a reason, gets an ``mcp_auth_failed`` row (the rest are only counted in
    the log), so a flood of bad tokens cannot flood the audit trail."""

    async def _audit(prefix: str, address: str, reason: str) -> None:
        key = f"auth-failed-audited:{address}:{reason}"
        if not await runtime.cache.add(key, "1", AUTH_FAILURE_AUDIT_INTERVAL_SECONDS):
            logger.debug(
                "token refused (%s) from %s; already audited this interval", reason, address
            )
            return
        await audit.record_now(
            runtime.sessions,
            "mcp_auth_failed",
            audit.Actor(token_prefix=prefix, client_address=address),
            details={"reason": reason},
        )

    return _audit


CallerPrincipal = Annotated[Principal, Depends(principal)]


def scoped(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency passing the principal on only if its token carries ``scope``."""

    async def _check(caller: CallerPrincipal) -> Principal:
        if not caller.has_scope(scope):
            raise Forbidden(f"This token lacks the '{scope}' scope", code="insufficient_scope")
        return caller

    return _check


Reader = Annotated[Principal, Depends(scoped("read"))]
Leaser = Annotated[Principal, Depends(scoped("lease"))]
