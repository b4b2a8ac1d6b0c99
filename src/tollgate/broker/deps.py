"""Who is calling the broker: a user's JWT, or an access token acting for its user."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from tollgate.broker import audit, tokens
from tollgate.broker.models import AccessToken
from tollgate.core.deps import ClientAddress, RuntimeDep, SessionDep
from tollgate.core.errors import Forbidden
from tollgate.identity.deps import BearerToken, current_user
from tollgate.identity.models import User

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
    token: BearerToken, session: SessionDep, runtime: RuntimeDep, address: ClientAddress
) -> Principal:
    """Authenticate the bearer; failed token attempts are audited with the prefix only,
    at most once per client address and reason per interval.

    The request's own transaction is ended before the failure is written in a transaction
    of its own: on SQLite a second writer would otherwise wait for the first.
    """
    if not token.startswith(tokens.TOKEN_PREFIX):
        user = await current_user(token, session, runtime.settings)
        return Principal(user, None, audit.Actor(user_id=user.id, client_address=address))
    try:
        use = await tokens.authenticate(session, token)
    except tokens.TokenRefused as refused:
        await session.rollback()
        await _audit_refusal(runtime, token, address, refused.reason)
        raise
    tokens.track_use(session, runtime.cache, use.token)
    actor = audit.Actor(
        user_id=use.user.id, token_prefix=use.token.token_prefix, client_address=address
    )
    return Principal(use.user, use.token, actor)


async def _audit_refusal(runtime: RuntimeDep, token: str, address: str, reason: str) -> None:
    """The first refusal of an interval from this address, for this reason, gets a row."""
    key = f"auth-failed-audited:{address}:{reason}"
    if not await runtime.cache.add(key, "1", AUTH_FAILURE_AUDIT_INTERVAL_SECONDS):
        logger.debug("token refused (%s) from %s; already audited this interval", reason, address)
        return
    await audit.record_now(
        runtime.sessions,
        "mcp_auth_failed",
        audit.Actor(token_prefix=token[: tokens.TOKEN_VISIBLE_PREFIX], client_address=address),
        details={"reason": reason},
    )


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
