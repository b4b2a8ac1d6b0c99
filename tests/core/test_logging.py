"""Logs are JSON lines off a terminal and never carry a secret."""

from __future__ import annotations

import json
import logging

import pytest

from tollgate.core.logging import JsonFormatter, RedactingFilter, redact


@pytest.mark.parametrize(
    "secret_text",
    [
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
        "key mcp_AbCdEfGhIjKlMnOpQrStUvWxYz012345 used",
        "access token mcpt_AbCdEfGhIjKlMnOpQrStUvWxYz012345 refused",
        "GET /mcp/ws?token=supersecretvalue&x=1",
        "password=hunter2hunter2",
    ],
)
def test_secrets_are_redacted_from_log_text(secret_text: str) -> None:
    cleaned = redact(secret_text)
    fragments = ("eyJzdWIiOiJ4In0", "AbCdEfGhIjKl", "supersecretvalue", "hunter2hunter2")
    for fragment in fragments:
        assert fragment not in cleaned


def test_json_formatter_writes_one_object_per_record_without_secrets() -> None:
    record = logging.makeLogRecord(
        {
            "msg": "auth with %s",
            "args": ("mcp_AbCdEfGhIjKlMnOpQrStUvWxYz012345",),
            "levelno": 20,
            "levelname": "INFO",
            "name": "tollgate.test",
            "request_id": "r-1",
        }
    )
    RedactingFilter().filter(record)
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert entry["level"] == "info"
    assert entry["logger"] == "tollgate.test"
    assert entry["request_id"] == "r-1"
    assert "mcp_AbCdEfGh" not in line
