"""Who is signed in to the pages: a user JWT in an HttpOnly, SameSite=Lax cookie, and a CSRF
token (a second cookie, echoed in every form) that a page of another site cannot read."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from tollgate.core.deps import SessionDep, SettingsDep
from tollgate.core.errors import Forbidden, Unauthorized
from tollgate.core.settings import Settings
from tollgate.identity.credentials import user_for_jwt
from tollgate.identity.models import User

SESSION_COOKIE = "tollgate_session"
CSRF_COOKIE = "tollgate_csrf"
PAGES_PATH = "/ui"
LOGIN_PATH = f"{PAGES_PATH}/login"


@dataclass(frozen=True)
class Viewer:
    """Who is signed in, as an error page shows them (read while the request's session
    was open: an error page comes after it closed)."""

    username: str
    role: str
    is_superuser: bool


class SignInRequired(Exception):
    """A page was asked for without a valid session: the answer is the sign-in page."""


def sign_in(response: Response, settings: Settings, token: str) -> None:
    """Keep ``token`` (a user JWT) as the session of the pages."""
    secure = settings.public_url.startswith("https://")
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.access_token_expire_minutes * 60,
        path="/",
        httponly=True,
        samesite="lax",
        secure=secure,
    )


def sign_out(response: Response) -> None:
    """End the session."""
    response.delete_cookie(SESSION_COOKIE, path="/")


def csrf_token(request: Request) -> str:
    """The CSRF token of this browser (a new one when it has none yet)."""
    return request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)


def keep_csrf(request: Request, response: Response, token: str) -> None:
    """Set the CSRF cookie if the browser did not send it."""
    if request.cookies.get(CSRF_COOKIE) != token:
        response.set_cookie(CSRF_COOKIE, token, path="/", httponly=True, samesite="strict")


def check_csrf(request: Request, sent: str) -> None:
    """Refuse a form whose CSRF token is not this browser's."""
    expected = request.cookies.get(CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(expected, sent):
        raise Forbidden("The form expired: reload the page and try again", code="csrf_failed")


async def page_user(request: Request, session: SessionDep, settings: SettingsDep) -> User:
    """The signed-in user of a page (SignInRequired without a valid session)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInRequired
    try:
        user = await user_for_jwt(token, session, settings)
    except Unauthorized as exc:
        raise SignInRequired from exc
    request.state.viewer = Viewer(user.username, user.role, user.is_superuser)
    return user


PageUser = Annotated[User, Depends(page_user)]


async def checked_form(request: Request, csrf: Annotated[str, Form()] = "") -> None:
    """Dependency of every form post: its CSRF token must match."""
    check_csrf(request, csrf)


CsrfChecked = Annotated[None, Depends(checked_form)]


def to_login(request: Request) -> RedirectResponse:
    """The redirect to the sign-in page, coming back here afterwards."""
    return RedirectResponse(f"{LOGIN_PATH}?next={request.url.path}", status_code=303)
