"""User JWTs: HS256, ``exp`` required, issuer and audience set on the ones we issue."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt

from tollgate.core.clock import utc_now
from tollgate.core.errors import Unauthorized

ALGORITHM = "HS256"


@dataclass(frozen=True)
class TokenClaims:
    """What Tollgate reads from a user JWT.

    Tokens we issue name the user by id (``sub``) and carry the user's token version
    (``tv``); tokens from a sibling backend name the user by ``email`` (or ``sub``).
    """

    email: str | None
    display_name: str | None
    issued_by_us: bool
    user_id: int | None = None
    token_version: int | None = None


def create_access_token(
    *,
    secret: str,
    email: str,
    user_id: int,
    role: str,
    token_version: int,
    issuer: str,
    audience: str,
    expires_in: timedelta,
) -> str:
    """A signed JWT bound to the user's id and token version (``sub``, ``tv``); it keeps
    the ``email`` claim for the seeds' backends that read it."""
    now = utc_now()
    payload = {
        "sub": str(user_id),
        "email": email,
        "user_id": user_id,
        "tv": token_version,
        "role": role,
        "iss": issuer,
        "aud": audience,
        "iat": now,
        "exp": now + expires_in,
    }
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def decode_access_token(token: str, *, secret: str, issuer: str, audience: str) -> TokenClaims:
    """Verify a user JWT: ours name the user by id and token version, others by email.

    Tokens we issue carry our issuer and audience and both are checked, and their ``sub``
    (the user id) and ``tv`` (token version). A token from a sibling backend sharing the
    secret (seed 000) may carry neither issuer nor audience; if it carries one, it must be
    ours; its user is read from ``email`` or ``sub``.
    """
    try:
        payload: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["exp"], "verify_aud": False},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("Token expired", code="token_expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized("Invalid token", code="invalid_token") from exc
    if "iss" in payload and payload["iss"] != issuer:
        raise Unauthorized("Invalid token", code="invalid_token")
    ours = payload.get("iss") == issuer
    if (ours or "aud" in payload) and audience not in _as_list(payload.get("aud", [])):
        raise Unauthorized("Invalid token", code="invalid_token")
    display = payload.get("displayName") or payload.get("display_name")
    display_name = display if isinstance(display, str) else None
    if ours:
        return _our_claims(payload, display_name)
    email = payload.get("email") or payload.get("sub")
    if not isinstance(email, str) or "@" not in email:
        raise Unauthorized("Invalid token: missing email", code="invalid_token")
    return TokenClaims(email=email.strip().lower(), display_name=display_name, issued_by_us=False)


def _our_claims(payload: dict[str, Any], display_name: str | None) -> TokenClaims:
    subject, version = payload.get("sub"), payload.get("tv")
    if not isinstance(subject, str) or not subject.isdigit() or len(subject) > 18:
        raise Unauthorized("Invalid token", code="invalid_token")
    if not isinstance(version, int) or isinstance(version, bool):
        raise Unauthorized("Invalid token", code="invalid_token")
    email = payload.get("email")
    return TokenClaims(
        email=email.strip().lower() if isinstance(email, str) else None,
        display_name=display_name,
        issued_by_us=True,
        user_id=int(subject),
        token_version=version,
    )


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
