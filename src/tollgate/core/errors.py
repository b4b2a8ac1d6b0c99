"""Errors raised by services, and the one handler that turns them into responses."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
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


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error the same JSON shape."""
    app.add_exception_handler(TollgateError, _tollgate_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RedisError, _cache_unavailable)
    app.add_exception_handler(Exception, _unexpected_error)
