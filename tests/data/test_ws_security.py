"""Seed 002's seven security features and its "Error Handling" section, each over a real
WebSocket connection to a Tollgate serving ``/mcp/ws`` on 127.0.0.1."""

from __future__ import annotations

import httpx
import pytest

from tests.data.conftest import (
    MCP_TOKEN,
    SENSITIVE_COLUMNS,
    ask,
    checksum,
    closed_code,
    helpdesk_path,
    receive,
    secret_values,
    serving,
    sqlite_rows,
    ws,
)
from tests.gateway.conftest import Gateway, new_member
from tollgate.core.settings import Settings

POLICY_VIOLATION = 1008
"""The close code of a refused connection (disabled, bad token, rate limit)."""

INVALID_TOKEN = {"status": "error", "error": "Invalid authentication token"}

VISIBLE_USER_COLUMNS = {
    "id",
    "email",
    "first_name",
    "last_name",
    "is_super_admin",
    "department",
    "created_at",
}
"""The demo ``users`` columns a client may see."""


def list_users(request_id: str = "list-users-1", **params: object) -> dict[str, object]:
    return {"id": request_id, "action": "list", "model": "users", "params": params}


# 1. Disabled by default


async def test_server_is_disabled_by_default(settings: Settings) -> None:
    assert Settings().mcp_enabled is False
    async with serving(settings) as gateway, ws(gateway) as socket:
        assert await receive(socket) == {"status": "error", "error": "MCP server is disabled"}
        assert await closed_code(socket) == POLICY_VIOLATION


# 2. Token authentication


async def test_token_in_header_is_accepted(live: Gateway) -> None:
    async with ws(live, MCP_TOKEN) as socket:
        reply = await ask(
            socket, {"id": "get-user-1", "action": "get", "model": "users", "params": {"id": 1}}
        )
    assert reply["status"] == "ok", reply
    assert reply["data"]["id"] == 1


async def test_token_in_query_parameter_is_accepted(live: Gateway) -> None:
    async with ws(live, None, query=f"token={MCP_TOKEN}") as socket:
        reply = await ask(socket, list_users(limit=3))
    assert reply["status"] == "ok", reply
    assert reply["count"] == 3


async def test_active_account_key_is_accepted_in_header_and_query(live: Gateway) -> None:
    member = await new_member(live)
    async with ws(live, member.key) as socket:
        assert (await ask(socket, list_users(limit=1)))["status"] == "ok"
    async with ws(live, None, query=f"token={member.key}") as socket:
        assert (await ask(socket, list_users(limit=1)))["status"] == "ok"


@pytest.mark.parametrize(
    ("header", "query"),
    [
        (None, ""),
        ("", ""),
        ("wrong-token", ""),
        (MCP_TOKEN[:-1], ""),
        (MCP_TOKEN + "x", ""),
        ("mcp_" + "A" * 32, ""),
        (None, "token="),
        (None, "token=wrong-token"),
        (None, "mcp_token=dev-token-12345"),
    ],
    ids=[
        "no-token",
        "empty-header",
        "wrong",
        "prefix",
        "longer",
        "unknown-key",
        "empty-query",
        "wrong-query",
        "other-parameter",
    ],
)
async def test_missing_or_invalid_token_is_refused_and_connection_closed(
    live: Gateway, header: str | None, query: str
) -> None:
    async with ws(live, header, query=query) as socket:
        assert await receive(socket) == INVALID_TOKEN
        assert await closed_code(socket) == POLICY_VIOLATION


async def test_regenerated_key_is_refused_and_the_new_one_accepted(live: Gateway) -> None:
    member = await new_member(live)
    async with ws(live, member.key) as socket:
        assert (await ask(socket, list_users(limit=1)))["status"] == "ok"
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as http:
        response = await http.post("/api/mcp/regenerate-key", headers=member.jwt_headers)
    assert response.status_code == 200, response.text
    new_key = response.json()["mcp_api_key"]

    async with ws(live, member.key) as socket:
        assert await receive(socket) == INVALID_TOKEN
        assert await closed_code(socket) == POLICY_VIOLATION
    async with ws(live, new_key) as socket:
        assert (await ask(socket, list_users(limit=1)))["status"] == "ok"


async def test_an_access_token_is_refused_like_an_invalid_token(live: Gateway) -> None:
    member = await new_member(live)
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as http:
        issued = await http.post(
            "/api/v1/tokens", json={"name": "server"}, headers=member.jwt_headers
        )
    assert issued.status_code == 201, issued.text

    async with ws(live, issued.json()["token"]) as socket:
        assert await receive(socket) == INVALID_TOKEN
        assert await closed_code(socket) == POLICY_VIOLATION


async def test_empty_configured_token_never_matches_an_empty_one(
    data_settings: Settings,
) -> None:
    async with serving(data_settings.model_copy(update={"mcp_token": ""})) as gateway:
        for header in ("", None):
            async with ws(gateway, header) as socket:
                assert await receive(socket) == INVALID_TOKEN
                assert await closed_code(socket) == POLICY_VIOLATION


# 3. Read-only operations


@pytest.mark.parametrize("action", ["create", "update", "delete"])
async def test_writes_are_refused_in_read_only_mode(
    live: Gateway, data_settings: Settings, action: str
) -> None:
    before = checksum(helpdesk_path(data_settings))
    async with ws(live) as socket:
        reply = await ask(
            socket,
            {
                "id": "req-1",
                "action": action,
                "model": "users",
                "params": {"id": 1, "data": {"email": "x@example.com", "password_hash": "x"}},
            },
        )
        assert reply == {
            "id": "req-1",
            "status": "error",
            "error": f"Write operations not allowed in read-only mode: {action}",
        }
        assert (await ask(socket, list_users(limit=1)))["status"] == "ok"
    assert checksum(helpdesk_path(data_settings)) == before


async def test_writes_are_refused_even_with_read_only_mode_off(data_settings: Settings) -> None:
    before = checksum(helpdesk_path(data_settings))
    async with (
        serving(data_settings.model_copy(update={"mcp_readonly": False})) as gateway,
        ws(gateway) as socket,
    ):
        reply = await ask(
            socket, {"id": 7, "action": "delete", "model": "tickets", "params": {"id": 1}}
        )
    assert reply["id"] == 7
    assert reply["status"] == "error"
    assert "read-only mode" not in reply["error"]
    assert checksum(helpdesk_path(data_settings)) == before


# 4. Model whitelist


@pytest.mark.parametrize("action", ["list", "get", "query"])
async def test_model_outside_the_whitelist_is_refused(live: Gateway, action: str) -> None:
    async with ws(live) as socket:
        reply = await ask(
            socket,
            {"id": "req-1", "action": action, "model": "sensitive_data", "params": {"id": 1}},
        )
    assert reply == {
        "id": "req-1",
        "status": "error",
        "error": "Model 'sensitive_data' not allowed. Allowed models: users, tickets, change_log",
    }


async def test_existing_table_is_refused_when_not_whitelisted(data_settings: Settings) -> None:
    settings = data_settings.model_copy(update={"mcp_allowed_models": ["users", "tickets"]})
    async with serving(settings) as gateway, ws(gateway) as socket:
        for model in ("change_log", "sqlite_master", "users; DROP TABLE users"):
            reply = await ask(socket, {"id": "r", "action": "list", "model": model})
            assert reply == {
                "id": "r",
                "status": "error",
                "error": f"Model '{model}' not allowed. Allowed models: users, tickets",
            }
        assert (await ask(socket, {"id": "t", "action": "list", "model": "tickets"}))["count"] == 50


# 5. Sensitive field filtering


async def test_sensitive_fields_never_appear_in_list_get_or_query(
    live: Gateway, data_settings: Settings
) -> None:
    secrets = secret_values(helpdesk_path(data_settings))
    assert len(secrets) >= 3 * 40
    replies = []
    async with ws(live) as socket:
        replies.append(await ask(socket, list_users(limit=100)))
        replies.append(
            await ask(socket, {"id": "g", "action": "get", "model": "users", "params": {"id": 1}})
        )
        replies.append(
            await ask(
                socket,
                {
                    "id": "q",
                    "action": "query",
                    "model": "users",
                    "params": {"filters": {"is_super_admin": True}},
                },
            )
        )
    listed, got, queried = replies
    assert listed["count"] == 40
    assert queried["count"] == 1
    assert queried["data"][0]["id"] == 1
    for record in [*listed["data"], got["data"], *queried["data"]]:
        assert set(record) == VISIBLE_USER_COLUMNS
    for reply in replies:
        text = str(reply)
        assert not [name for name in SENSITIVE_COLUMNS if name in text]
        assert not [value for value in secrets if value in text]


async def test_seed_sensitive_fields_are_removed_even_without_patterns(
    data_settings: Settings,
) -> None:
    settings = data_settings.model_copy(update={"sensitive_field_patterns": []})
    async with serving(settings) as gateway, ws(gateway) as socket:
        listed = await ask(socket, list_users(limit=5))
    assert set(listed["data"][0]) == VISIBLE_USER_COLUMNS


async def test_sensitive_field_patterns_from_settings_remove_more_columns(
    data_settings: Settings,
) -> None:
    patterns = [*data_settings.sensitive_field_patterns, r"^depart"]
    settings = data_settings.model_copy(update={"sensitive_field_patterns": patterns})
    departments = {
        row[0] for row in sqlite_rows(helpdesk_path(settings), "SELECT department FROM users")
    }
    async with serving(settings) as gateway, ws(gateway) as socket:
        listed = await ask(socket, list_users(limit=100))
        got = await ask(socket, {"id": "g", "action": "get", "model": "users", "params": {"id": 2}})
        queried = await ask(
            socket,
            {"id": "q", "action": "query", "model": "users", "params": {"filters": {"id": 3}}},
        )
        by_department = await ask(socket, list_users(filters={"department": "support"}))
    for record in [*listed["data"], got["data"], *queried["data"]]:
        assert set(record) == VISIBLE_USER_COLUMNS - {"department"}
    assert not [d for d in departments if d in str([listed, got, queried])]
    assert by_department == {
        "id": "list-users-1",
        "status": "error",
        "error": "Invalid filter field: department",
    }


# 6. Rate limiting


async def test_rate_limit_refuses_the_request_after_the_limit_and_closes(
    data_settings: Settings,
) -> None:
    settings = data_settings.model_copy(update={"mcp_rate_limit": 5})
    async with serving(settings) as gateway:
        async with ws(gateway) as socket:
            for n in range(5):
                assert (await ask(socket, list_users(f"r{n}", limit=1)))["status"] == "ok"
            assert await ask(socket, list_users("r5", limit=1)) == {
                "status": "error",
                "error": "Rate limit exceeded: 5 requests per 60s",
            }
            assert await closed_code(socket) == POLICY_VIOLATION
        async with ws(gateway) as fresh:
            assert (await ask(fresh, list_users("again", limit=1)))["status"] == "ok"


async def test_refused_requests_count_against_the_rate_limit(data_settings: Settings) -> None:
    settings = data_settings.model_copy(update={"mcp_rate_limit": 3})
    async with serving(settings) as gateway, ws(gateway) as socket:
        for frame in ("not json", '{"action": "list"}', b"\xff\xfe"):
            assert (await ask(socket, frame))["status"] == "error"
        assert (await ask(socket, list_users(limit=1)))["error"] == (
            "Rate limit exceeded: 3 requests per 60s"
        )
        assert await closed_code(socket) == POLICY_VIOLATION


# 7. Simple (equality) filtering only


@pytest.mark.parametrize(
    "filters",
    [
        {"status": {"$ne": "open"}},
        {"status": {"op": "like", "value": "%"}},
        {"status": ["open", "closed"]},
        {"id": {"gt": 1}},
        {"id": [1, 2]},
    ],
)
async def test_filters_with_operators_objects_or_lists_are_refused(
    live: Gateway, filters: dict[str, object]
) -> None:
    async with ws(live) as socket:
        reply = await ask(
            socket,
            {"id": "q", "action": "query", "model": "tickets", "params": {"filters": filters}},
        )
        name = next(iter(filters))
        assert reply == {
            "id": "q",
            "status": "error",
            "error": f"Invalid filter value for {name}: only exact values are supported",
        }
        assert (await ask(socket, list_users(limit=1)))["status"] == "ok"


@pytest.mark.parametrize("filters", [["status", "open"], "status = 'open'", 1])
async def test_filters_must_be_an_object(live: Gateway, filters: object) -> None:
    async with ws(live) as socket:
        reply = await ask(
            socket,
            {"id": "q", "action": "list", "model": "tickets", "params": {"filters": filters}},
        )
    assert reply == {
        "id": "q",
        "status": "error",
        "error": "Invalid parameter: filters must be an object of field=value pairs",
    }


@pytest.mark.parametrize(
    "field",
    [
        "password_hash",
        "totp_secret",
        "api_key",
        "PASSWORD_HASH",
        "nope",
        "email OR 1=1",
        "id; DROP TABLE users",
        "users.password_hash",
    ],
)
async def test_filters_on_sensitive_or_unknown_columns_are_refused(
    live: Gateway, data_settings: Settings, field: str
) -> None:
    [(secret,)] = sqlite_rows(
        helpdesk_path(data_settings), "SELECT password_hash FROM users WHERE id = 1"
    )
    async with ws(live) as socket:
        reply = await ask(socket, list_users(filters={field: secret}))
    assert reply == {
        "id": "list-users-1",
        "status": "error",
        "error": f"Invalid filter field: {field}",
    }


@pytest.mark.parametrize(
    "value",
    [
        "open' OR '1'='1",
        "open'; DROP TABLE tickets; --",
        "' UNION SELECT password_hash FROM users --",
        '" OR ""="',
        "1 OR 1=1",
        "%",
    ],
)
async def test_sql_injection_in_filter_values_matches_nothing(
    live: Gateway, data_settings: Settings, value: str
) -> None:
    before = checksum(helpdesk_path(data_settings))
    async with ws(live) as socket:
        for field in ("status", "id", "title"):
            reply = await ask(
                socket,
                {
                    "id": "q",
                    "action": "query",
                    "model": "tickets",
                    "params": {"filters": {field: value}},
                },
            )
            assert (reply["status"], reply["data"], reply["count"]) == ("ok", [], 0), reply
        got = await ask(
            socket, {"id": "g", "action": "get", "model": "tickets", "params": {"id": value}}
        )
        assert got == {"id": "g", "status": "error", "error": f"Record not found: tickets {value}"}
    assert checksum(helpdesk_path(data_settings)) == before


async def test_equality_filters_select_exactly_the_matching_records(
    live: Gateway, data_settings: Settings
) -> None:
    expected = [
        row[0]
        for row in sqlite_rows(
            helpdesk_path(data_settings),
            "SELECT id FROM tickets WHERE status = 'open' AND priority = 'high' ORDER BY id",
        )
    ]
    assert 0 < len(expected) < 100
    async with ws(live) as socket:
        reply = await ask(
            socket,
            {
                "id": "query-tickets-1",
                "action": "query",
                "model": "tickets",
                "params": {"filters": {"status": "open", "priority": "high"}, "limit": 100},
            },
        )
    assert [r["id"] for r in reply["data"]] == expected
    assert all((r["status"], r["priority"]) == ("open", "high") for r in reply["data"])
    assert (reply["count"], reply["limit"], reply["offset"]) == (len(expected), 100, 0)
