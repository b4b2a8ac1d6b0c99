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
    """What Tollgate reads from a user JWT."""

    email: str
    display_name: str | None
    issued_by_us: bool


def create_access_token(
    *,
    secret: str,
    email: str,
    user_id: int,
    role: str,
    issuer: str,
    audience: str,
    expires_in: timedelta,
) -> str:
    """A signed JWT naming the user by email (``email`` and ``sub``, as seed 000 reads it)."""
    now = utc_now()
    payload = {
        "sub": email,
        "email": email,
        "user_id": user_id,
        "role": role,
        "iss": issuer,
        "aud": audience,
        "iat": now,
        "exp": now + expires_in,
    }
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def decode_access_token(token: str, *, secret: str, issuer: str, audience: str) -> TokenClaims:
    """Verify a user JWT and read the user's email from ``email`` or ``sub``.

    Tokens we issue carry our issuer and audience and both are checked. A token from a
    sibling backend sharing the secret (seed 000) may carry neither; if it carries one, it
    must be ours.
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
    email = payload.get("email") or payload.get("sub")
    if not isinstance(email, str) or "@" not in email:
        raise Unauthorized("Invalid token: missing email", code="invalid_token")
    display = payload.get("displayName") or payload.get("display_name")
    return TokenClaims(
        email=email.strip().lower(),
        display_name=display if isinstance(display, str) else None,
        issued_by_us=payload.get("iss") == issuer,
    )


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
