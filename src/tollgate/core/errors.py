"""Errors raised by services, and the one handler that turns them into responses."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from redis.exceptions import RedisError
from sqlalchemy.exc import DataError, DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)


class TollgateError(Exception):
    """A failure with an HTTP status and a stable machine-readable code."""

    status_code = 400
    code = "bad_request"
    message = "Bad request"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.message
        self.code = code or self.code
        self.extra = extra or {}
        self.headers = headers
        super().__init__(self.message)

    def detail(self) -> dict[str, Any]:
        """The ``detail`` object of the error response."""
        return {"code": self.code, "message": self.message, **self.extra}


class BadRequest(TollgateError):
    """The request is well-formed but cannot be carried out as asked."""


class Unauthorized(TollgateError):
    """No valid credentials."""

    status_code = 401
    code = "unauthorized"
    message = "Not authenticated"

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        super().__init__(message, code=code, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(TollgateError):
    """Authenticated, but not allowed."""

    status_code = 403
    code = "forbidden"
    message = "You do not have permission to do this"


class NotFound(TollgateError):
    """The thing asked for does not exist (or is not visible to the caller)."""

    status_code = 404
    code = "not_found"
    message = "Not found"


class Conflict(TollgateError):
    """The request conflicts with what is stored."""

    status_code = 409
    code = "conflict"
    message = "Conflict"


class Unprocessable(TollgateError):
    """Well-formed, but the content cannot be used (a field's value, a missing resource)."""

    status_code = 422
    code = "unprocessable"
    message = "The request cannot be processed"


class InsufficientCredits(TollgateError):
    """The account cannot pay for this."""

    status_code = 402
    code = "insufficient_credits"
    message = "Not enough credits"


class TooManyRequests(TollgateError):
    """A rate limit was hit."""

    status_code = 429
    code = "rate_limited"
    message = "Too many requests"


class ServiceUnavailable(TollgateError):
    """A dependency (database, cache, upstream) is not reachable."""

    status_code = 503
    code = "unavailable"
    message = "Service unavailable"


class GatewayTimeout(TollgateError):
    """A dependency (an LLM provider, an upstream) took too long to answer."""

    status_code = 504
    code = "timeout"
    message = "The request timed out"


class McpNotEnabled(NotFound):
    """Seed 000's answer for a user without an MCP account."""

    code = "mcp_not_enabled"
    message = "MCP is not enabled for your account. Click 'Enable MCP' to get started."


class McpAlreadyEnabled(BadRequest):
    """The user's MCP account exists already."""

    code = "already_enabled"
    message = "MCP is already enabled for your account."


class InvalidWebhookPayload(BadRequest):
    """A billing webhook payload that does not read as an event; names the first bad field."""

    code = "invalid_payload"
    message = "Invalid webhook payload"

    def __init__(self, cause: Exception) -> None:
        extra: dict[str, Any] = {}
        if isinstance(cause, ValidationError) and cause.errors():
            extra["field"] = ".".join(str(part) for part in cause.errors()[0]["loc"])
        super().__init__(extra=extra)


class InvalidCredentialFields(Unprocessable):
    """Credentials that do not fit their service's fields; ``fields`` names the culprits."""

    code = "invalid_credentials_fields"

    def __init__(self, message: str, fields: list[str]) -> None:
        super().__init__(message, extra={"fields": fields})


class ErrorDetail(BaseModel):
    """The ``detail`` of every Tollgate error (some carry more fields)."""

    code: str
    message: str


class ErrorBody(BaseModel):
    """The body of every Tollgate error response."""

    detail: ErrorDetail


ERROR_DESCRIPTIONS = {
    400: "Bad request",
    401: "Not authenticated",
    402: "Not enough credits",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict with what is stored",
    413: "Request body too large",
    422: "Invalid request",
    429: "Rate limited",
    503: "A dependency is unavailable",
}
"""What each error status means, as the OpenAPI document says it."""

COMMON_ERRORS = (401, 403, 404, 409, 422)
"""The statuses most routes may answer with (authentication, permission, lookup, state,
validation)."""


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """An OpenAPI ``responses=`` mapping documenting ``statuses`` with the error body."""
    return {
        status: {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[status]}
        for status in statuses
    }


def error_response(
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """The JSON error body every Tollgate route uses."""
    body = {"detail": {"code": code, "message": message, **extra}}
    return JSONResponse(body, status_code=status, headers=headers)


def not_found_response() -> JSONResponse:
    """The 404 for a path nothing serves (outside the routers, e.g. beside ``/mcp``)."""
    return error_response(404, "not_found", "Not Found")


def bearer_refusal(error: str, description: str, resource_metadata_url: str) -> JSONResponse:
    """An OAuth 2.0 bearer refusal (RFC 6750), pointing at the resource's metadata (RFC 9728)."""
    challenge = f'Bearer error="{error}", resource_metadata="{resource_metadata_url}"'
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=401,
        headers={"WWW-Authenticate": challenge},
    )


JSONRPC_INVALID_REQUEST = -32600
"""JSON-RPC's error code for a request that cannot be served as sent."""


def jsonrpc_error_response(status: int, code: int, message: str) -> JSONResponse:
    """A JSON-RPC error with no request id, as MCP transports answer outside a request."""
    return JSONResponse(
        {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}},
        status_code=status,
    )


async def _tollgate_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TollgateError)
    return error_response(exc.status_code, exc.code, exc.message, exc.headers, **exc.extra)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", "")), "type": err.get("type")}
        for err in exc.errors()
    ]
    return error_response(422, "validation_error", "The request is not valid", errors=errors)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.detail, dict) and "code" in exc.detail:
        return JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), exc.headers)


async def _unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error: %s", type(exc).__name__)
    return error_response(500, "internal_error", "Internal server error")


async def _cache_unavailable(_: Request, exc: Exception) -> JSONResponse:
    logger.error("cache unreachable: %s", type(exc).__name__)
    return error_response(
        503,
        "cache_unavailable",
        "The cache is unreachable; try again shortly",
        {"Retry-After": "5"},
    )


UNSTORABLE_TEXT = ("invalid byte sequence", "0x00", "character not in repertoire")
"""How PostgreSQL refuses text it cannot store (a NUL character above all)."""


async def _database_refused_value(_: Request, exc: Exception) -> JSONResponse:
    """A value the database cannot hold is the client's error (422), not the server's."""
    text = str(getattr(exc, "orig", exc)).lower()
    if isinstance(exc, DataError) or any(marker in text for marker in UNSTORABLE_TEXT):
        return error_response(422, "invalid_value", "A value is out of range or not storable")
    logger.error("database error: %s", type(exc).__name__)
    return error_response(500, "internal_error", "Internal server error")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error the same JSON shape."""
    app.add_exception_handler(TollgateError, _tollgate_error)
    app.add_exception_handler(DBAPIError, _database_refused_value)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RedisError, _cache_unavailable)
    app.add_exception_handler(Exception, _unexpected_error)
