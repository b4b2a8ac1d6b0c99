"""The ``requestState`` Tollgate hands a 2026-07-28 caller when an upstream asks for input.

An upstream that needs the caller's input answers a call with an input-required result; the
caller answers the questions and calls again with the state it was given. Tollgate passes
the questions on as they are, and wraps the upstream's own state in one of its own: sealed
(AES-GCM under the deployment's keys, so any process can open it and nobody can forge or
alter it), bound to the caller's account and to the tool, and short-lived.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from tollgate.core.crypto import CryptoError, Keyring

STATE_TTL_SECONDS = 600
"""A caller has this long to answer an upstream's questions (a person may be answering)."""

ASSOCIATED_DATA = "tollgate:mcp-request-state"


class InvalidRequestState(Exception):
    """A request state Tollgate did not issue, for another caller or tool, or expired."""


@dataclass(frozen=True)
class InputState:
    """What a caller's retry carries back: whose call it is and the upstream's own state."""

    account_id: int
    tool: str
    upstream_state: str | None


def seal(keyring: Keyring, state: InputState) -> str:
    """The opaque ``requestState`` for ``state``."""
    body = {
        "a": state.account_id,
        "t": state.tool,
        "s": state.upstream_state,
        "e": int(time.time()) + STATE_TTL_SECONDS,
    }
    return keyring.encrypt_text(json.dumps(body, separators=(",", ":")), ASSOCIATED_DATA)


def unseal(keyring: Keyring, sealed: str, *, account_id: int, tool: str) -> InputState:
    """The state a caller sent back, checked against who calls which tool now."""
    try:
        body = json.loads(keyring.decrypt_text(sealed, ASSOCIATED_DATA))
    except (CryptoError, ValueError) as exc:
        raise InvalidRequestState() from exc
    if not isinstance(body, dict) or body.get("a") != account_id or body.get("t") != tool:
        raise InvalidRequestState()
    expires = body.get("e")
    if not isinstance(expires, int) or expires < time.time():
        raise InvalidRequestState()
    upstream_state = body.get("s")
    return InputState(account_id, tool, upstream_state if isinstance(upstream_state, str) else None)
