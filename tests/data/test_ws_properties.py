"""Property: whatever frames a client sends to ``/mcp/ws`` (random bytes, random text, random
requests with random actions, models, parameters and filters), the server answers every one
with a well-formed reply, keeps the connection open (the rate limit is set out of reach),
never sends a sensitive field or value, and never writes to the database."""

from __future__ import annotations

import asyncio
import json
import string
from typing import Any

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from websockets.sync.client import connect

from tests.data.conftest import (
    MCP_TOKEN,
    REPLY_SECONDS,
    SENSITIVE_COLUMNS,
    checksum,
    helpdesk_path,
    secret_values,
    serving,
    sqlite_rows,
    ws_url,
)
from tollgate.core.settings import Settings
from tollgate.data.protocol import MAX_FRAME_BYTES

EXAMPLES = 200
"""Connections opened; each sends 1 to 4 frames: a few hundred frames in all."""

COLUMNS = [
    "id",
    "email",
    "status",
    "priority",
    "title",
    "department",
    "is_super_admin",
    "ticket_id",
    "requester_id",
    "created_at",
    *SENSITIVE_COLUMNS,
    "password",
    "secret",
    "token",
    "rowid",
    "sqlite_master",
    "id) OR (1=1",
]
"""Filter fields: real visible and sensitive columns, seed names, and hostile ones."""

INJECTIONS = [
    "open' OR '1'='1",
    "'; DROP TABLE users; --",
    "' UNION SELECT password_hash, totp_secret, api_key FROM users --",
    "1 OR 1=1",
    "%",
    "*",
]


def _json_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False),
        st.text(max_size=20),
        st.sampled_from(INJECTIONS),
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=6,
    )


def _requests(secrets: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Random requests: half shaped like real reads (so many succeed and return records),
    half with anything in any field."""
    values = _json_values() | st.sampled_from(secrets)
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(-2, 320)
        | st.sampled_from(["open", "high", "support", "status", *INJECTIONS, *secrets])
    )
    filters = st.dictionaries(st.sampled_from(COLUMNS) | st.text(max_size=10), values, max_size=3)
    reads = st.fixed_dictionaries(
        {
            "id": st.integers(0, 10**6) | st.text(max_size=8),
            "action": st.sampled_from(["list", "get", "query"]),
            "model": st.sampled_from(["users", "users", "tickets", "change_log"]),
            "params": st.fixed_dictionaries(
                {},
                optional={
                    "limit": st.integers(1, 150),
                    "offset": st.integers(0, 320),
                    "filters": st.dictionaries(st.sampled_from(COLUMNS), scalars, max_size=2),
                    "id": st.integers(-1, 45) | scalars,
                },
            ),
        }
    )
    params = st.fixed_dictionaries(
        {},
        optional={
            "limit": st.integers(-5, 500) | _json_values(),
            "offset": st.integers(-5, 400) | _json_values(),
            "filters": filters | _json_values(),
            "id": st.integers(-2, 320) | values,
        },
    )
    anything = st.fixed_dictionaries(
        {},
        optional={
            "id": st.text(max_size=12) | st.integers() | _json_values(),
            "action": st.sampled_from(
                ["list", "get", "query", "create", "update", "delete", "drop", "", "LIST"]
            )
            | _json_values(),
            "model": st.sampled_from(
                ["users", "tickets", "change_log", "sensitive_data", "sqlite_master", ""]
            )
            | _json_values(),
            "params": params | _json_values(),
        },
    )
    return reads | anything


def _frames(secrets: list[str]) -> st.SearchStrategy[str | bytes]:
    requests = _requests(secrets)
    return st.one_of(
        requests.map(json.dumps),
        requests.map(json.dumps),
        requests.map(lambda r: json.dumps(r).encode()),
        requests.map(lambda r: json.dumps(r)[: len(json.dumps(r)) // 2]),
        st.text(max_size=60),
        st.binary(max_size=60),
        st.text(alphabet=string.printable, max_size=30).map(lambda t: "{" + t),
        st.builds(Nested, st.integers(1, 3)),
    )


class Nested(str):
    """Deeply nested JSON arrays, from half the frame limit to beyond it (a short repr)."""

    def __new__(cls, halves: int) -> Nested:
        return super().__new__(cls, "[" * (MAX_FRAME_BYTES // 2 * halves))

    def __repr__(self) -> str:
        return f"Nested({len(self)} brackets)"


def _request_id(frame: str | bytes) -> tuple[bool, Any]:
    """Whether ``frame`` is a request whose id the reply must echo, and that id."""
    message = _decoded(frame)
    if not isinstance(message, dict):
        return False, None
    request_id = message.get("id")
    valid = isinstance(request_id, str | int) and not isinstance(request_id, bool)
    size = len(frame.encode() if isinstance(frame, str) else frame)
    return valid and size <= MAX_FRAME_BYTES, request_id


def _check_reply(frame: str | bytes, raw: str | bytes, secrets: list[str]) -> bool:
    """Check one reply; True when it carried records of ``users``."""
    assert isinstance(raw, str), raw
    reply = json.loads(raw)
    assert isinstance(reply, dict)
    assert reply["status"] in ("ok", "error"), reply
    if reply["status"] == "error":
        assert isinstance(reply["error"], str)
        assert reply["error"]
    echoes, request_id = _request_id(frame)
    if echoes:
        assert reply.get("id") == request_id, (frame, reply)
    sent = frame if isinstance(frame, str) else frame.decode(errors="replace")
    sent_decoded = json.dumps(_decoded(frame))
    data = reply.get("data")
    records = data if isinstance(data, list) else [data] if isinstance(data, dict) else []
    for record in records:
        assert not set(record) & set(SENSITIVE_COLUMNS), record
    for name in SENSITIVE_COLUMNS:
        assert name not in raw or name in sent, (name, frame, raw)
    for value in secrets:
        assert value not in raw or value in sent or value in sent_decoded, (frame, raw)
    return any("email" in record for record in records)


def _decoded(frame: str | bytes) -> Any:
    try:
        return json.loads(frame)
    except (ValueError, RecursionError):
        return None


async def test_random_frames_are_always_answered_without_secrets_or_writes(
    data_settings: Settings,
) -> None:
    settings = data_settings.model_copy(update={"mcp_rate_limit": 100_000})
    path = helpdesk_path(settings)
    secrets = sorted(secret_values(path))
    counts = sqlite_rows(
        path,
        "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM tickets), "
        "(SELECT count(*) FROM change_log)",
    )
    before = checksum(path)
    answered: list[bool] = []

    async with serving(settings) as gateway:
        url = ws_url(gateway)

        @hypothesis_settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(frames=st.lists(_frames(secrets), min_size=1, max_size=4))
        def every_frame_is_answered(frames: list[str | bytes]) -> None:
            with connect(
                url, additional_headers={"X-MCP-Token": MCP_TOKEN}, open_timeout=REPLY_SECONDS
            ) as socket:
                for frame in frames:
                    socket.send(frame)
                    raw = socket.recv(timeout=REPLY_SECONDS)
                    answered.append(_check_reply(frame, raw, secrets))

        await asyncio.wait_for(asyncio.to_thread(every_frame_is_answered), 120)

    assert len(answered) >= EXAMPLES
    assert sum(answered) >= 10, "too few reads of users records to mean anything"
    assert checksum(path) == before
    assert (
        sqlite_rows(
            path,
            "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM tickets), "
            "(SELECT count(*) FROM change_log)",
        )
        == counts
        == [(40, 300, 600)]
    )
