"""What every page shares: the templates, rendering with the signed-in user and the CSRF
token, permission checks, a refusal in one readable line, and error pages (never a JSON
body or a trace) for a browser."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from tollgate.core.deps import ClientAddress, SessionDep
from tollgate.core.errors import Forbidden, TollgateError
from tollgate.core.state import component
from tollgate.gateway.hub import Gateway
from tollgate.identity.models import User
from tollgate.identity.permissions import permissions_for
from tollgate.web.session import (
    PAGES_PATH,
    CsrfChecked,
    PageUser,
    Viewer,
    csrf_token,
    keep_csrf,
)

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
GatewayDep = Annotated[Gateway, Depends(component(Gateway))]

ERROR_TITLES = {
    400: "Check the form",
    403: "Not allowed",
    404: "Not found",
    409: "Not possible",
    422: "Check the form",
}
"""The headings of error pages by status; anything else is "Something went wrong"."""


def plural(noun: str, count: float, many: str | None = None) -> str:
    """``noun`` as it goes with ``count``: "call" for one (or minus one), "calls" (or
    ``many``) otherwise, zero included."""
    return noun if abs(count) == 1 else (many or f"{noun}s")


def counted(count: float, noun: str, many: str | None = None) -> str:
    """``count`` and its noun: "1 call", "0 calls", "2 entries" (with ``many``)."""
    return f"{count} {plural(noun, count, many)}"


templates.env.filters["plural"] = plural
templates.env.filters["counted"] = counted


def render(
    request: Request,
    template: str,
    user: User | Viewer | None,
    status: int | None = None,
    **context: Any,
) -> HTMLResponse:
    """A page, with the signed-in user, what they may do and this browser's CSRF token.

    ``error`` (with ``error_for``, the form it is about) is shown next to that form; a page
    showing one answers 400 unless ``status`` says otherwise.
    """
    status = status or (400 if context.get("error") else 200)
    token = csrf_token(request)
    held = permissions_for(user.role, user.is_superuser) if user else frozenset()
    response = templates.TemplateResponse(
        request,
        template,
        {"user": user, "may": held, "csrf": token, "base": PAGES_PATH, **context},
        status_code=status,
    )
    keep_csrf(request, response, token)
    return response


@dataclass(frozen=True)
class Visit:
    """A signed-in person asking for a page: the request, who they are, the request's
    transaction and where they came from."""

    request: Request
    user: User
    session: AsyncSession
    address: str

    def render(self, template: str, **context: Any) -> HTMLResponse:
        """:func:`render` for this visit."""
        return render(self.request, template, self.user, **context)


def visiting(permission: str) -> Callable[..., Coroutine[Any, Any, Visit]]:
    """A dependency giving the :class:`Visit` of a page that needs ``permission`` (the one
    its ``/api/v1`` counterpart needs)."""

    async def _visit(
        request: Request, user: PageUser, session: SessionDep, address: ClientAddress
    ) -> Visit:
        require_permission(user, permission)
        return Visit(request, user, session, address)

    _visit.__name__ = f"visiting_{permission.replace('.', '_')}"
    return _visit


def posting(permission: str) -> Callable[..., Coroutine[Any, Any, Visit]]:
    """:func:`visiting`, for a form's post: its CSRF token must be this browser's."""
    visit = visiting(permission)

    # A default, not Annotated: the annotation is read as a string among the module's
    # names, where this function's own ``visit`` is not.
    async def _post(_: CsrfChecked, checked: Visit = Depends(visit)) -> Visit:
        return checked

    _post.__name__ = f"posting_{permission.replace('.', '_')}"
    return _post


def require_permission(user: User, permission: str) -> None:
    """Forbidden unless ``user`` holds ``permission``."""
    if permission not in permissions_for(user.role, user.is_superuser):
        raise Forbidden(f"This page needs the {permission!r} permission")


def problem(refused: ValidationError | TollgateError) -> str:
    """What was wrong, in one line a person can act on."""
    if isinstance(refused, TollgateError):
        return refused.message
    first = refused.errors()[0]
    field = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    return f"Check the form: {field + ': ' if field else ''}{message}"


@asynccontextmanager
async def undone_if_refused(session: AsyncSession) -> AsyncIterator[None]:
    """Run a page's action in a savepoint: when a service refuses it, what it had written is
    undone, and the request goes on to show the page with the refusal."""
    async with session.begin_nested():
        yield


class PageRoute(APIRoute):
    """A page's route: a refusal it did not show next to a form itself becomes an error
    page with the same status for a browser (a script asking for JSON still gets JSON)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The route's handler, with refusals turned into error pages."""
        handle = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                return await handle(request)
            except (TollgateError, RequestValidationError) as refused:
                if "text/html" not in request.headers.get("accept", ""):
                    raise
                return error_page(request, refused)

        return page


def error_page(request: Request, refused: TollgateError | RequestValidationError) -> Response:
    """The page that says what went wrong, under the usual header."""
    if isinstance(refused, TollgateError):
        status, message = refused.status_code, refused.message
    else:
        status, message = 422, "Check the form: a field is missing or not valid."
    viewer = getattr(request.state, "viewer", None)
    title = ERROR_TITLES.get(status, "Something went wrong")
    return render(request, "error.html", viewer, status, title=title, message=message)
