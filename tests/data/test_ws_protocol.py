"""Seed 002's message protocol over a real WebSocket: the reply shapes, paging limits, the
seed's "Error Handling" texts, bad frames answered without losing the connection, and the
log lines the seed lists (never with the token)."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from websockets.asyncio.client import ClientConnection

from tests.data.conftest import (
    MCP_TOKEN,
    ask,
    closed_code,
    helpdesk_path,
    receive,
    serving,
    sqlite_rows,
    ws,
)
from tests.gateway.conftest import Gateway, new_member
from tests.waiting import eventually
from tollgate.core.settings import Settings
from tollgate.data.protocol import MAX_FRAME_BYTES

LOG_DEADLINE_SECONDS = 10.0
"""The server logs a closed connection well within this."""


def get_ticket(record_id: object, request_id: object = "get-1") -> dict[str, object]:
    return {"id": request_id, "action": "get", "model": "tickets", "params": {"id": record_id}}


async def still_usable(socket: ClientConnection) -> None:
    """The connection answers a valid request after a bad one."""
    reply = await ask(socket, get_ticket(1, "after"))
    assert (reply["id"], reply["status"], reply["data"]["id"]) == ("after", "ok", 1), reply


# Reply shapes


async def test_list_reply_has_the_seed_shape(live: Gateway) -> None:
    async with ws(live) as socket:
        reply = await ask(
            socket,
            {
                "id": "list-users-1",
                "action": "list",
                "model": "users",
                "params": {"limit": 50, "offset": 0, "filters": {"is_super_admin": True}},
            },
        )
    assert set(reply) == {"id", "status", "data", "count", "limit", "offset"}
    assert (reply["id"], reply["status"], reply["count"], reply["limit"], reply["offset"]) == (
        "list-users-1",
        "ok",
        1,
        50,
        0,
    )
    assert reply["data"][0]["id"] == 1
    assert reply["data"][0]["is_super_admin"] is True


async def test_get_returns_the_stored_record(live: Gateway, data_settings: Settings) -> None:
    [row] = sqlite_rows(
        helpdesk_path(data_settings),
        "SELECT id, title, status, priority, requester_id, assignee_id, created_at "
        "FROM tickets WHERE id = 123",
    )
    async with ws(live) as socket:
        reply = await ask(socket, get_ticket(123, "req-2"))
    assert set(reply) == {"id", "status", "data"}
    assert reply["id"] == "req-2"
    assert reply["status"] == "ok"
    record = reply["data"]
    columns = ("id", "title", "status", "priority", "requester_id", "assignee_id", "created_at")
    assert tuple(record[c] for c in columns) == row


async def test_integer_request_ids_are_echoed_as_sent(live: Gateway) -> None:
    async with ws(live) as socket:
        assert (await ask(socket, get_ticket(2, 41)))["id"] == 41
        assert (await ask(socket, get_ticket(2, "41")))["id"] == "41"


# Paging


async def test_limit_defaults_to_fifty(live: Gateway) -> None:
    async with ws(live) as socket:
        reply = await ask(socket, {"id": "l", "action": "list", "model": "tickets"})
    assert (reply["count"], reply["limit"], reply["offset"]) == (50, 50, 0)
    assert [r["id"] for r in reply["data"]] == list(range(1, 51))


@pytest.mark.parametrize(("asked", "given"), [(500, 100), (101, 100), (100, 100), (1, 1)])
async def test_limit_above_one_hundred_is_capped(live: Gateway, asked: int, given: int) -> None:
    async with ws(live) as socket:
        reply = await ask(
            socket,
            {"id": "l", "action": "query", "model": "change_log", "params": {"limit": asked}},
        )
    assert (reply["status"], reply["count"], reply["limit"]) == ("ok", given, given)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": 0}, "Invalid parameter: limit must be at least 1"),
        ({"limit": -5}, "Invalid parameter: limit must be at least 1"),
        ({"limit": "10"}, "Invalid parameter: limit must be an integer"),
        ({"limit": 10.5}, "Invalid parameter: limit must be an integer"),
        ({"limit": True}, "Invalid parameter: limit must be an integer"),
        ({"offset": -1}, "Invalid parameter: offset must be between 0 and 1000000"),
        ({"offset": "0"}, "Invalid parameter: offset must be an integer"),
    ],
)
async def test_bad_paging_parameters_are_refused(
    live: Gateway, params: dict[str, object], message: str
) -> None:
    async with ws(live) as socket:
        reply = await ask(
            socket, {"id": "p", "action": "list", "model": "tickets", "params": params}
        )
        assert reply == {"id": "p", "status": "error", "error": message}
        await still_usable(socket)


async def test_offset_pages_through_every_ticket_exactly_once(
    live: Gateway, data_settings: Settings
) -> None:
    [(total,)] = sqlite_rows(helpdesk_path(data_settings), "SELECT count(*) FROM tickets")
    assert total == 300
    seen: list[int] = []
    async with ws(live) as socket:
        for offset in range(0, total + 100, 70):
            reply = await ask(
                socket,
                {
                    "id": f"page-{offset}",
                    "action": "list",
                    "model": "tickets",
                    "params": {"limit": 70, "offset": offset},
                },
            )
            assert reply["offset"] == offset
            assert reply["count"] == len(reply["data"])
            seen.extend(r["id"] for r in reply["data"])
    assert sorted(seen) == list(range(1, total + 1))
    assert len(seen) == len(set(seen))


# The seed's "Error Handling" texts not covered by the security tests


async def test_get_without_id_is_missing_a_required_parameter(live: Gateway) -> None:
    async with ws(live) as socket:
        for params in ({}, None, {"ids": 1}):
            request = {"id": "req-1", "action": "get", "model": "users", "params": params}
            assert await ask(socket, request) == {
                "id": "req-1",
                "status": "error",
                "error": "Missing required parameter: id",
            }
        reply = await ask(socket, {"id": "req-1", "action": "get", "model": "users"})
        assert reply["error"] == "Missing required parameter: id"
        await still_usable(socket)


async def test_get_of_a_missing_record_is_an_error(live: Gateway) -> None:
    async with ws(live) as socket:
        assert await ask(socket, get_ticket(99999)) == {
            "id": "get-1",
            "status": "error",
            "error": "Record not found: tickets 99999",
        }
        await still_usable(socket)


# Bad frames: an error reply, and the connection stays usable


@pytest.mark.parametrize(
    ("frame", "reply"),
    [
        ("{not json", {"status": "error", "error": "Invalid JSON"}),
        ("", {"status": "error", "error": "Invalid JSON"}),
        (b"\xff\xfe\x00garbage", {"status": "error", "error": "Invalid JSON"}),
        ("[" * 50_000, {"status": "error", "error": "Invalid JSON"}),
        ('{"id": 1, "params": ' + "[" * 20_000, {"status": "error", "error": "Invalid JSON"}),
        ("[1, 2, 3]", {"status": "error", "error": "Invalid request: expected a JSON object"}),
        ('"list"', {"status": "error", "error": "Invalid request: expected a JSON object"}),
        (
            '{"action": "list", "model": "users"}',
            {"status": "error", "error": "Missing required field: id"},
        ),
        (
            '{"id": null, "action": "list", "model": "users"}',
            {"status": "error", "error": "Missing required field: id"},
        ),
        (
            '{"id": true, "action": "list", "model": "users"}',
            {"status": "error", "error": "Missing required field: id"},
        ),
        (
            '{"id": {"a": 1}, "action": "list", "model": "users"}',
            {"status": "error", "error": "Missing required field: id"},
        ),
        (
            '{"id": "u", "action": "explode", "model": "users"}',
            {"id": "u", "status": "error", "error": "Unknown action: explode"},
        ),
        (
            '{"id": "u", "action": "LIST", "model": "users"}',
            {"id": "u", "status": "error", "error": "Unknown action: LIST"},
        ),
        (
            '{"id": "u", "model": "users"}',
            {"id": "u", "status": "error", "error": "Missing required field: action"},
        ),
        (
            '{"id": "u", "action": "list"}',
            {"id": "u", "status": "error", "error": "Missing required field: model"},
        ),
        (
            '{"id": "u", "action": "list", "model": "users", "params": [1]}',
            {"id": "u", "status": "error", "error": "Invalid parameter: params must be an object"},
        ),
        (b'{"id": "b", "action": "get", "model": "tickets", "params": {"id": 5}}', None),
    ],
    ids=[
        "malformed",
        "empty",
        "binary-garbage",
        "deeply-nested",
        "deeply-nested-params",
        "array",
        "string",
        "missing-id",
        "null-id",
        "boolean-id",
        "object-id",
        "unknown-action",
        "action-case",
        "missing-action",
        "missing-model",
        "params-not-object",
        "binary-json",
    ],
)
async def test_bad_frames_get_an_error_reply_and_the_connection_stays_usable(
    live: Gateway, frame: str | bytes, reply: dict[str, object] | None
) -> None:
    async with ws(live) as socket:
        answer = await ask(socket, frame)
        if reply is None:
            assert (answer["status"], answer["data"]["id"]) == ("ok", 5)
        else:
            assert answer == reply
        await still_usable(socket)


@pytest.mark.parametrize(
    "frame",
    [
        "x" * (MAX_FRAME_BYTES + 1),
        json.dumps(
            {
                "id": "big",
                "action": "list",
                "model": "users",
                "params": {"filters": {"email": "a" * MAX_FRAME_BYTES}},
            }
        ),
        b"{" + b" " * MAX_FRAME_BYTES + b"}",
        json.dumps(
            {
                "id": "big",
                "action": "list",
                "model": "users",
                "params": {"filters": {"email": "\u20ac" * 30_000}},
            },
            ensure_ascii=False,
        ),
    ],
    ids=["text", "json", "binary", "multibyte"],
)
async def test_oversized_frame_is_refused_and_the_connection_stays_usable(
    live: Gateway, frame: str | bytes
) -> None:
    size = len(frame.encode() if isinstance(frame, str) else frame)
    assert size > MAX_FRAME_BYTES
    async with ws(live) as socket:
        assert await ask(socket, frame) == {
            "status": "error",
            "error": f"Message too large: at most {MAX_FRAME_BYTES} bytes",
        }
        await still_usable(socket)


async def test_frame_just_under_the_size_limit_is_answered(live: Gateway) -> None:
    request = {
        "id": "near",
        "action": "list",
        "model": "users",
        "params": {"filters": {"email": ""}},
    }
    padding = MAX_FRAME_BYTES - len(json.dumps(request))
    request["params"] = {"filters": {"email": "a" * padding}}
    frame = json.dumps(request)
    assert len(frame.encode()) == MAX_FRAME_BYTES
    async with ws(live) as socket:
        reply = await ask(socket, frame)
    assert (reply["id"], reply["status"], reply["data"]) == ("near", "ok", [])


async def test_query_failure_is_an_error_reply_and_the_connection_stays_usable(
    live: Gateway,
) -> None:
    async with ws(live) as socket:
        for request in (
            {"id": "f", "action": "list", "model": "tickets", "params": {"filters": {"id": 2**70}}},
            {"id": "f", "action": "get", "model": "tickets", "params": {"id": 2**70}},
        ):
            reply = await ask(socket, request)
            assert reply["id"] == "f"
            assert reply["status"] == "error"
            assert reply["error"].startswith("Query failed")
            await still_usable(socket)


async def test_one_connection_answers_requests_in_order(live: Gateway) -> None:
    async with ws(live) as socket:
        for n in range(1, 21):
            await socket.send(json.dumps(get_ticket(n, f"r{n}")))
        replies = [await receive(socket) for _ in range(20)]
    assert [(r["id"], r["data"]["id"]) for r in replies] == [(f"r{n}", n) for n in range(1, 21)]


async def test_connections_are_served_concurrently(live: Gateway) -> None:
    async def one(n: int) -> int:
        async with ws(live) as socket:
            reply = await ask(socket, get_ticket(n, n))
        assert reply["id"] == n
        return int(reply["data"]["id"])

    assert await asyncio.gather(*(one(n) for n in range(1, 11))) == list(range(1, 11))


# Logging


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


async def _logged(caplog: pytest.LogCaptureFixture, message: str) -> None:
    async def logged() -> bool:
        return message in _messages(caplog)

    await eventually(
        logged, lambda: f"logged {message!r}; only {_messages(caplog)}", LOG_DEADLINE_SECONDS
    )


async def test_connections_refusals_and_rate_limit_closes_are_logged_without_the_token(
    data_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tollgate")
    settings = data_settings.model_copy(update={"mcp_rate_limit": 2})
    async with serving(settings) as gateway:
        member = await new_member(gateway)
        async with ws(gateway, None, query=f"token={MCP_TOKEN}") as socket:
            assert (await ask(socket, get_ticket(1)))["status"] == "ok"
        await _logged(caplog, "MCP WebSocket connection established")
        await _logged(caplog, "MCP WebSocket connection closed")

        async with ws(gateway, MCP_TOKEN[:-1]) as socket:
            assert (await receive(socket))["error"] == "Invalid authentication token"
            await closed_code(socket)
        await _logged(caplog, "MCP connection rejected: Invalid authentication token")
        rejections = [r for r in caplog.records if "rejected" in r.getMessage()]
        assert [r.levelname for r in rejections] == ["WARNING"]

        async with ws(gateway, member.key) as socket:
            for n in range(2):
                assert (await ask(socket, get_ticket(n + 1)))["status"] == "ok"
            assert (await ask(socket, get_ticket(3)))["error"].startswith("Rate limit exceeded")
            await closed_code(socket)
        await _logged(caplog, "MCP connection closed: Rate limit exceeded")

    text = caplog.text + "\n".join(_messages(caplog))
    for secret in (MCP_TOKEN, MCP_TOKEN[:-1], member.key, member.key[8:]):
        assert secret not in text
