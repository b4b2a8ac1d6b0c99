"""Posting analytics records: who may (admin JWT, an ``ingest`` token, a request signed with
``MCP_WEBHOOK_SECRET``), what a bad record gets, and that a batch is all or nothing."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import httpx
import pytest

from tests.analytics.conftest import (
    EVENT_TEMPLATE,
    WEBHOOK_SECRET,
    Person,
    ago,
    get_ok,
    iso,
    person,
    post_ok,
    rows,
    signed_headers,
)
from tests.conftest import running
from tollgate.analytics.ingest_auth import SIGNATURE_TOLERANCE_SECONDS, sign
from tollgate.analytics.models import CostTracking, ErrorLog, PerformanceMetric, UsageEvent
from tollgate.analytics.schemas import MAX_BATCH
from tollgate.app import create_app
from tollgate.core.runtime import Runtime
from tollgate.core.settings import Settings
from tollgate.identity.models import Role

EVENT = EVENT_TEMPLATE
METRIC = {"metric_name": "queue_depth", "metric_value": 7, "metric_unit": "items"}
ERROR = {"error_type": "TimeoutError", "error_message": "upstream took too long"}
COST = {
    "service_name": "langdb",
    "operation_type": "completion",
    "tokens_used": 900,
    "cost_usd": "0.0125",
}

KINDS = [
    ("events", EVENT, UsageEvent),
    ("metrics", METRIC, PerformanceMetric),
    ("errors", ERROR, ErrorLog),
    ("costs", COST, CostTracking),
]


def stored(**counts: int) -> dict[str, int]:
    """The answer of an ingestion route that stored ``counts``."""
    return {"events": 0, "metrics": 0, "errors": 0, "costs": 0, **counts}


async def ingest_token(client: httpx.AsyncClient, owner: Person, *scopes: str) -> str:
    """An access token of ``owner`` with ``scopes``, issued through the tokens API."""
    response = await client.post(
        "/api/v1/tokens",
        json={"name": "analytics-feeder", "scopes": list(scopes)},
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


async def test_admin_jwt_stores_each_kind_of_record(
    client: httpx.AsyncClient, runtime: Runtime, admin: Person
) -> None:
    for kind, record, model in KINDS:
        assert await post_ok(client, kind, record, admin.headers) == stored(**{kind: 1}), kind

        assert await rows(runtime, model) == 1, kind
        page = await get_ok(client, kind, admin.headers)
        assert page["total"] == 1, kind
        [item] = page["items"]
        for field, value in record.items():
            expected = float(value) if field == "cost_usd" else value
            actual = float(item[field]) if field == "cost_usd" else item[field]
            assert actual == expected, (kind, field)


async def test_stored_event_keeps_the_timestamp_it_was_posted_with(
    client: httpx.AsyncClient, admin: Person
) -> None:
    moment = ago(hours=3).replace(microsecond=0)

    await post_ok(client, "events", {**EVENT, "timestamp": iso(moment)}, admin.headers)

    [item] = (await get_ok(client, "events", admin.headers))["items"]
    assert item["timestamp"].replace("Z", "+00:00") == iso(moment)


async def test_batch_stores_every_kind_in_one_request(
    client: httpx.AsyncClient, runtime: Runtime, admin: Person
) -> None:
    body = {"events": [EVENT] * 3, "metrics": [METRIC] * 2, "errors": [ERROR], "costs": [COST] * 4}

    assert await post_ok(client, "batch", body, admin.headers) == stored(
        events=3, metrics=2, errors=1, costs=4
    )

    counts = [
        await rows(runtime, m) for m in (UsageEvent, PerformanceMetric, ErrorLog, CostTracking)
    ]
    assert counts == [3, 2, 1, 4]


async def test_plain_user_is_forbidden_to_ingest(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime)

    response = await client.post("/api/v1/analytics/events", json=EVENT, headers=user.headers)

    assert response.status_code == 403
    assert response.json()["detail"]["code"] == "permission_denied"
    assert await rows(runtime, UsageEvent) == 0


async def test_ingestion_without_credentials_is_unauthorized(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    bodies = {**{kind: record for kind, record, _ in KINDS}, "batch": {"events": [EVENT]}}
    for path, body in bodies.items():
        response = await client.post(f"/api/v1/analytics/{path}", json=body)

        assert response.status_code == 401, path
        assert response.json()["detail"]["code"] == "missing_authorization", path
    assert [await rows(runtime, m) for _, _, m in KINDS] == [0, 0, 0, 0]


async def test_token_with_ingest_scope_may_post_records(
    client: httpx.AsyncClient, runtime: Runtime, admin: Person
) -> None:
    token = await ingest_token(client, admin, "ingest")
    headers = {"Authorization": f"Bearer {token}"}

    assert await post_ok(client, "events", EVENT, headers) == stored(events=1)
    assert await post_ok(client, "batch", {"metrics": [METRIC] * 2}, headers) == stored(metrics=2)

    assert await rows(runtime, UsageEvent) == 1
    assert await rows(runtime, PerformanceMetric) == 2


async def test_token_without_ingest_scope_is_forbidden(
    client: httpx.AsyncClient, runtime: Runtime, admin: Person
) -> None:
    token = await ingest_token(client, admin, "lease")

    response = await client.post(
        "/api/v1/analytics/events", json=EVENT, headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 403
    assert response.json()["detail"]["code"] == "insufficient_scope"
    assert await rows(runtime, UsageEvent) == 0


async def test_ingest_token_of_a_plain_user_is_forbidden(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await person(runtime, Role.USER)
    token = await ingest_token(client, user, "ingest")

    response = await client.post(
        "/api/v1/analytics/events", json=EVENT, headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 403
    assert response.json()["detail"]["code"] == "permission_denied"
    assert await rows(runtime, UsageEvent) == 0


async def post_signed(
    client: httpx.AsyncClient, path: str, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    return await client.post(f"/api/v1/analytics/{path}", content=body, headers=headers)


async def test_correctly_signed_request_is_stored(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    body = json.dumps({"events": [EVENT, EVENT], "errors": [ERROR]}).encode()

    response = await post_signed(client, "batch", body, signed_headers(body))

    assert response.status_code == 201, response.text
    assert response.json() == stored(events=2, errors=1)
    assert await rows(runtime, UsageEvent) == 2


def tampered(how: str) -> tuple[bytes, dict[str, str]]:
    """A signed request spoiled in one way."""
    body = json.dumps(EVENT).encode()
    headers = signed_headers(body)
    if how == "wrong_secret":
        headers = signed_headers(body, secret="not-the-secret")
    elif how == "changed_body":
        body = json.dumps({**EVENT, "success": False}).encode()
    elif how == "changed_timestamp":
        headers["X-Tollgate-Timestamp"] = str(int(headers["X-Tollgate-Timestamp"]) - 1)
    elif how == "no_prefix":
        headers["X-Tollgate-Signature"] = headers["X-Tollgate-Signature"].removeprefix("sha256=")
    elif how == "missing_timestamp":
        del headers["X-Tollgate-Timestamp"]
    else:
        headers["X-Tollgate-Timestamp"] = "12e3"
    return body, headers


async def test_badly_signed_request_is_refused(client: httpx.AsyncClient, runtime: Runtime) -> None:
    for how in (
        "wrong_secret",
        "changed_body",
        "changed_timestamp",
        "no_prefix",
        "missing_timestamp",
        "odd_timestamp",
    ):
        body, headers = tampered(how)

        response = await post_signed(client, "events", body, headers)

        assert response.status_code == 401, how
        assert response.json()["detail"]["code"] == "invalid_signature", how
    assert await rows(runtime, UsageEvent) == 0


@pytest.mark.parametrize(
    "stamp",
    ["abc", "1e400", "9" * 5000, "9" * 400, "-5", "5.0", "0x10", ""],
    ids=["word", "float", "5000-digits", "400-digits", "negative", "decimal", "hex", "empty"],
)
async def test_signed_request_with_an_unreadable_timestamp_is_refused(
    client: httpx.AsyncClient, runtime: Runtime, stamp: str
) -> None:
    body = json.dumps(EVENT).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Tollgate-Timestamp": stamp,
        "X-Tollgate-Signature": sign(WEBHOOK_SECRET, stamp, body),
    }

    response = await post_signed(client, "events", body, headers)

    assert response.status_code == 401, response.text
    assert response.json()["detail"]["code"] == "invalid_signature"
    assert await rows(runtime, UsageEvent) == 0


async def test_signed_request_with_a_stale_timestamp_is_refused(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    for offset in (-(SIGNATURE_TOLERANCE_SECONDS + 60), SIGNATURE_TOLERANCE_SECONDS + 60):
        body = json.dumps(EVENT).encode()
        headers = signed_headers(body, timestamp=int(time.time()) + offset)

        response = await post_signed(client, "events", body, headers)

        assert response.status_code == 401, offset
        assert response.json()["detail"]["code"] == "stale_signature", offset
    assert await rows(runtime, UsageEvent) == 0


async def test_signed_request_within_the_tolerance_is_accepted(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    body = json.dumps(EVENT).encode()
    headers = signed_headers(body, timestamp=int(time.time()) - SIGNATURE_TOLERANCE_SECONDS + 30)

    response = await post_signed(client, "events", body, headers)

    assert response.status_code == 201, response.text


async def test_replayed_signed_request_is_refused(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    body = json.dumps(EVENT).encode()
    headers = signed_headers(body)
    first = await post_signed(client, "events", body, headers)
    assert first.status_code == 201, first.text

    replayed = await post_signed(client, "events", body, headers)

    assert replayed.status_code == 401
    assert replayed.json()["detail"]["code"] == "replayed_signature"
    assert await rows(runtime, UsageEvent) == 1


async def test_signed_request_is_refused_when_no_secret_is_configured(settings: Settings) -> None:
    unconfigured = settings.model_copy(update={"mcp_webhook_secret": ""})
    body = json.dumps(EVENT).encode()
    async with running(create_app(unconfigured, configure_logs=False)) as app:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            response = await post_signed(http, "events", body, signed_headers(body))
        assert await rows(app.state.runtime, UsageEvent) == 0

    assert response.status_code == 401
    assert response.json()["detail"]["code"] == "signature_not_configured"


BAD_RECORDS = [
    ("events", {**EVENT, "response_time_ms": -1}, "response_time_ms"),
    ("events", {**EVENT, "timestamp": "2026-01-01T00:00:00"}, "timestamp"),
    ("events", {**EVENT, "surprise": 1}, "surprise"),
    ("events", {**EVENT, "session_id": "a\x00b"}, "session_id"),
    ("metrics", {"metric_value": 1}, "metric_name"),
    ("metrics", {**METRIC, "metric_value": "NaN"}, "metric_value"),
    ("errors", {"error_type": "X"}, "error_message"),
    ("costs", {**COST, "cost_usd": "-0.01"}, "cost_usd"),
    ("costs", {**COST, "tokens_used": -5}, "tokens_used"),
    ("events", {**EVENT, "service": "s" * 65}, "service"),
    ("events", {**EVENT, "event_type": "t" * 65}, "event_type"),
    ("events", {**EVENT, "tool_name": "t" * 201}, "tool_name"),
    ("metrics", {**METRIC, "metric_unit": "u" * 33}, "metric_unit"),
    ("errors", {**ERROR, "error_type": "e" * 129}, "error_type"),
    ("costs", {**COST, "service_name": "s" * 65}, "service_name"),
    ("costs", {**COST, "operation_type": "o" * 65}, "operation_type"),
    ("costs", {**COST, "tokens_used": 2**31}, "tokens_used"),
    ("costs", {**COST, "cost_usd": "100000000"}, "cost_usd"),
]
"""Records each database would refuse (or silently keep) are refused alike by validation."""

LONGEST = [
    (
        "events",
        {
            **EVENT,
            "session_id": "s" * 128,
            "event_type": "t" * 64,
            "tool_name": "n" * 200,
            "service": "v" * 64,
        },
    ),
    ("metrics", {"metric_name": "m" * 128, "metric_value": 1e15, "metric_unit": "u" * 32}),
    ("errors", {"error_type": "e" * 128, "error_message": "x" * 20000, "service": "v" * 64}),
    (
        "costs",
        {
            "service_name": "s" * 64,
            "operation_type": "o" * 64,
            "tokens_used": 2**31 - 1,
            "cost_usd": "99999999.999999",
        },
    ),
]
"""The largest values validation accepts: every database must store them as they are."""


async def test_bad_record_is_refused_with_a_validation_error(
    client: httpx.AsyncClient, runtime: Runtime, admin: Person
) -> None:
    for kind, record, field in BAD_RECORDS:
        response = await client.post(
            f"/api/v1/analytics/{kind}", json=record, headers=admin.headers
        )

        assert response.status_code == 422, (kind, field, response.text)
        detail = response.json()["detail"]
        assert detail["code"] == "validation_error"
        assert [e["loc"] for e in detail["errors"]] == [["body", field]], (kind, field)
    assert [await rows(runtime, m) for _, _, m in KINDS] == [0, 0, 0, 0]


@pytest.mark.parametrize(
    "moment",
    ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"],
    ids=["year-0", "year-10000"],
)
async def test_record_time_outside_the_utc_calendar_is_refused(
    client: httpx.AsyncClient, runtime: Runtime, admin: Person, moment: str
) -> None:
    for kind, record, _ in KINDS:
        response = await client.post(
            f"/api/v1/analytics/{kind}", json={**record, "timestamp": moment}, headers=admin.headers
        )

        assert response.status_code == 422, (kind, response.text)
        detail = response.json()["detail"]
        assert detail["code"] == "validation_error"
        assert [e["loc"] for e in detail["errors"]] == [["body", "timestamp"]], kind
    assert [await rows(runtime, m) for _, _, m in KINDS] == [0, 0, 0, 0]


async def test_one_bad_record_in_a_batch_is_reported_by_index_and_nothing_is_stored(
    client: httpx.AsyncClient, runtime: Runtime, admin: Person
) -> None:
    events = [EVENT, {**EVENT, "tool_name": "second"}, {**EVENT, "response_time_ms": "slow"}]
    body = {"events": events, "metrics": [METRIC], "costs": [COST]}

    response = await client.post("/api/v1/analytics/batch", json=body, headers=admin.headers)

    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail["code"] == "validation_error"
    assert [e["loc"] for e in detail["errors"]] == [["body", "events", 2, "response_time_ms"]]
    assert [await rows(runtime, m) for _, _, m in KINDS] == [0, 0, 0, 0]


async def test_bad_record_in_a_later_kind_stores_nothing_of_the_earlier_ones(
    client: httpx.AsyncClient, runtime: Runtime, admin: Person
) -> None:
    body = json.dumps({"events": [EVENT] * 3, "costs": [COST, {**COST, "cost_usd": "lots"}]})

    response = await post_signed(client, "batch", body.encode(), signed_headers(body.encode()))

    assert response.status_code == 422, response.text
    assert [e["loc"] for e in response.json()["detail"]["errors"]] == [
        ["body", "costs", 1, "cost_usd"]
    ]
    assert await rows(runtime, UsageEvent) == 0


async def test_oversized_batch_is_refused(
    client: httpx.AsyncClient, runtime: Runtime, admin: Person
) -> None:
    body = {"metrics": [METRIC] * (MAX_BATCH + 1)}

    response = await client.post("/api/v1/analytics/batch", json=body, headers=admin.headers)

    assert response.status_code == 422
    assert response.json()["detail"]["errors"][0]["loc"] == ["body", "metrics"]
    assert await rows(runtime, PerformanceMetric) == 0


async def test_largest_accepted_values_are_stored_as_posted(
    client: httpx.AsyncClient, admin: Person
) -> None:
    for kind, record in LONGEST:
        response = await client.post(
            f"/api/v1/analytics/{kind}", json=record, headers=admin.headers
        )
        assert response.status_code == 201, (kind, response.text)

        [item] = (await get_ok(client, kind, admin.headers))["items"]
        for field, value in record.items():
            expected = Decimal(value) if field == "cost_usd" else value
            actual = Decimal(str(item[field])) if field == "cost_usd" else item[field]
            assert actual == expected, (kind, field)
