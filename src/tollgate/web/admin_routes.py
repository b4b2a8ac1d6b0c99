"""The admin console's people and money: users and their roles, MCP accounts with their
balance and ledger (and granting credits), and the broker's audit log. Each route needs the
permission of its ``/api/v1`` counterpart."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from tollgate.accounts import credits
from tollgate.accounts import service as accounts
from tollgate.accounts.schemas import CreditAdjustment
from tollgate.broker import audit
from tollgate.core.database import commit
from tollgate.core.deps import PageOffset, PathId, RuntimeDep
from tollgate.core.errors import TollgateError
from tollgate.identity import service as identity
from tollgate.identity.schemas import UserCreate
from tollgate.web import forms
from tollgate.web.pages import (
    PageRoute,
    Visit,
    counted,
    posting,
    problem,
    undone_if_refused,
    visiting,
)
from tollgate.web.service import Window
from tollgate.web.session import PAGES_PATH

router = APIRouter(include_in_schema=False, route_class=PageRoute)
UsersVisit = Annotated[Visit, Depends(visiting("admin.users.read"))]
UsersPost = Annotated[Visit, Depends(posting("admin.users.write"))]
AccountsVisit = Annotated[Visit, Depends(visiting("admin.accounts.manage"))]
AccountsPost = Annotated[Visit, Depends(posting("admin.accounts.manage"))]
AuditVisit = Annotated[Visit, Depends(visiting("audit.read"))]
USERS = f"{PAGES_PATH}/admin/users"
ACCOUNTS = f"{PAGES_PATH}/admin/accounts"
AUDIT = f"{PAGES_PATH}/admin/audit"

ROWS_PER_PAGE = 50
"""Rows of a long list on one page: enough to scan, short enough at 400 px."""

Filter = Annotated[str, Query(max_length=64)]


def _paged(path: str, **params: str) -> Callable[[int], str]:
    """Where the page of a list starting at an offset is, with the same filters."""
    kept = {name: value for name, value in params.items() if value}
    return lambda offset: f"{path}?{urlencode({**kept, 'offset': offset})}"


async def _users_view(visit: Visit, offset: int = 0, **extra: Any) -> HTMLResponse:
    found = await identity.list_users(visit.session, limit=ROWS_PER_PAGE + 1, offset=offset)
    shown = list(found[:ROWS_PER_PAGE])
    return visit.render(
        "users.html",
        users=shown,
        window=Window(offset, ROWS_PER_PAGE, len(shown), more=len(found) > ROWS_PER_PAGE),
        page_url=_paged(USERS),
        **extra,
    )


@router.get(USERS)
async def users_page(visit: UsersVisit, offset: PageOffset = 0) -> HTMLResponse:
    """Users with their role and state; superusers also get the forms to change them. Needs
    ``admin.users.read``."""
    return await _users_view(visit, offset)


@router.post(USERS)
async def create_user(
    visit: UsersPost,
    username: Annotated[str, Form(max_length=64)] = "",
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=256)] = "",
    role: Annotated[str, Form(max_length=16)] = "user",
) -> HTMLResponse:
    """Create a user with a first password. Needs ``admin.users.write`` (a superuser)."""
    try:
        body = UserCreate.model_validate(
            {"username": username, "email": email, "password": password, "role": role}
        )
        async with undone_if_refused(visit.session):
            created = await identity.create_user(
                visit.session,
                username=body.username,
                email=body.email,
                password=body.password,
                role=body.role,
            )
    except (ValidationError, TollgateError) as refused:
        return await _users_view(visit, error=problem(refused), error_for="add")
    await commit(visit.session)
    return await _users_view(visit, notice=f"Created {created.username}.")


async def _change_user(
    visit: Visit,
    runtime: RuntimeDep,
    user_id: int,
    *,
    role: str | None = None,
    is_active: bool | None = None,
) -> HTMLResponse:
    """Apply a role or state change to a user, or show why not next to that user."""
    target = await identity.get_user(visit.session, user_id)
    row = f"u{user_id}"
    try:
        identity.refuse_self_demotion(visit.user, target, role=role, is_active=is_active)
    except TollgateError as refused:
        return await _users_view(visit, error=problem(refused), error_for=row)
    await identity.update_user(
        visit.session, target, role=role, is_active=is_active, runtime=runtime
    )
    await commit(visit.session)
    notice = f"{target.username} is now {'an admin' if target.role == 'admin' else 'a user'}, "
    notice += "active." if target.is_active else "deactivated: their keys and tokens stop working."
    return await _users_view(visit, notice=notice, notice_for=row)


@router.post(f"{USERS}/{{user_id}}/role")
async def change_role(
    user_id: PathId,
    visit: UsersPost,
    runtime: RuntimeDep,
    role: Annotated[str, Form(pattern="^(user|admin)$")] = "user",
) -> HTMLResponse:
    """Make a user an admin or a plain user. Needs ``admin.users.write``; nobody demotes
    themselves."""
    return await _change_user(visit, runtime, user_id, role=role)


@router.post(f"{USERS}/{{user_id}}/active")
async def switch_user(
    user_id: PathId,
    visit: UsersPost,
    runtime: RuntimeDep,
    active: Annotated[str, Form(pattern="^(yes|no)$")] = "no",
) -> HTMLResponse:
    """Deactivate a user (their sessions, keys and tokens stop at once) or activate them
    again. Needs ``admin.users.write``; nobody deactivates themselves."""
    return await _change_user(visit, runtime, user_id, is_active=active == "yes")


@router.get(ACCOUNTS)
async def accounts_page(
    visit: AccountsVisit, email: Filter = "", offset: PageOffset = 0
) -> HTMLResponse:
    """MCP accounts with their owner, balance and tier, found by email. Needs
    ``admin.accounts.manage``."""
    total, found = await accounts.list_accounts(
        visit.session, email=email or None, limit=ROWS_PER_PAGE, offset=offset
    )
    return visit.render(
        "accounts.html",
        accounts=found,
        email=email,
        window=Window(offset, ROWS_PER_PAGE, len(found), total),
        page_url=_paged(ACCOUNTS, email=email),
    )


async def _account_view(
    visit: Visit, account_id: int, offset: int = 0, **extra: Any
) -> HTMLResponse:
    account = await accounts.get_account(visit.session, account_id)
    total, rows = await credits.ledger(
        visit.session, account_id, limit=ROWS_PER_PAGE, offset=offset
    )
    return visit.render(
        "account.html",
        account=account,
        ledger=rows,
        window=Window(offset, ROWS_PER_PAGE, len(rows), total),
        page_url=_paged(f"{ACCOUNTS}/{account_id}"),
        request_key=secrets.token_hex(16),
        **extra,
    )


@router.get(f"{ACCOUNTS}/{{account_id}}")
async def account_page(
    account_id: PathId, visit: AccountsVisit, offset: PageOffset = 0
) -> HTMLResponse:
    """An account's balance and ledger, newest first, and the form to grant credits. Needs
    ``admin.accounts.manage``."""
    return await _account_view(visit, account_id, offset)


@router.post(f"{ACCOUNTS}/{{account_id}}/credits")
async def grant_credits(
    account_id: PathId,
    visit: AccountsPost,
    amount: Annotated[str, Form(max_length=20)] = "",
    reason: Annotated[str, Form(max_length=500)] = "",
    request_key: Annotated[str, Form(max_length=150)] = "",
) -> HTMLResponse:
    """Add (or, with a negative amount, take) credits with a reason, as an adjustment ledger
    row; the same form sent twice grants once. Needs ``admin.accounts.manage``."""
    try:
        body = CreditAdjustment.model_validate(
            {
                "amount": forms.whole_number(amount, "The amount"),
                "reason": reason,
                "idempotency_key": request_key or None,
            }
        )
        async with undone_if_refused(visit.session):
            result = await accounts.grant_credits(
                visit.session,
                account_id,
                body.amount,
                reason=body.reason,
                actor=visit.user.email,
                request_key=body.idempotency_key,
            )
    except (ValidationError, TollgateError) as refused:
        return await _account_view(visit, account_id, error=problem(refused), error_for="grant")
    await commit(visit.session)
    notice = (
        "This grant was made already: nothing changed."
        if result.replayed
        else f"Granted {counted(result.amount, 'credit')}: the balance is {result.balance_after}."
    )
    return await _account_view(visit, account_id, notice=notice)


@router.get(AUDIT)
async def audit_page(
    visit: AuditVisit,
    action: Filter = "",
    actor: Filter = "",
    target_type: Filter = "",
    target_id: Filter = "",
    since: Filter = "",
    until: Filter = "",
    offset: PageOffset = 0,
) -> HTMLResponse:
    """The broker's audit log, newest first, filtered by action, actor, target and days.
    Needs ``audit.read``."""
    filters = {
        "action": action,
        "actor": actor,
        "target_type": target_type,
        "target_id": target_id,
        "since": since,
        "until": until,
    }
    where, error = _audit_filter(**filters)
    total, rows = (
        await audit.search(visit.session, where, limit=ROWS_PER_PAGE, offset=offset)
        if where
        else (0, [])
    )
    return visit.render(
        "audit.html",
        entries=rows,
        filters=filters,
        window=Window(offset, ROWS_PER_PAGE, len(rows), total),
        page_url=_paged(AUDIT, **filters),
        error=error,
        error_for="filter",
    )


def _audit_filter(
    action: str, actor: str, target_type: str, target_id: str, since: str, until: str
) -> tuple[audit.AuditFilter | None, str | None]:
    """The filter the audit form asks for, or why it cannot be read."""
    try:
        return audit.AuditFilter(
            action=action.strip() or None,
            actor_user_id=forms.optional_id(actor, "The actor's user id"),
            target_type=target_type.strip() or None,
            target_id=target_id.strip() or None,
            since=forms.day_start(since, "From"),
            until=forms.day_start(until, "To", days_after=1),
        ), None
    except TollgateError as refused:
        return None, problem(refused)
