"""The user portal's own credentials: personal integrations (secrets always masked) and
access tokens (the value shown once). Each route needs the permission its ``/api/v1``
counterpart needs: ``integrations.manage`` or ``tokens.manage``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from tollgate.broker import audit, catalogue, integrations, tokens
from tollgate.broker import integration_changes as changes
from tollgate.broker.models import IntegrationStatus
from tollgate.broker.schemas import IntegrationCreate, IntegrationUpdate, TokenCreate
from tollgate.core.crypto import Keyring
from tollgate.core.database import commit
from tollgate.core.deps import PathId, RuntimeDep
from tollgate.core.errors import TollgateError
from tollgate.web import forms
from tollgate.web.pages import PageRoute, Visit, posting, problem, undone_if_refused, visiting
from tollgate.web.session import PAGES_PATH

router = APIRouter(include_in_schema=False, route_class=PageRoute)
IntegrationsVisit = Annotated[Visit, Depends(visiting("integrations.manage"))]
IntegrationsPost = Annotated[Visit, Depends(posting("integrations.manage"))]
TokensVisit = Annotated[Visit, Depends(visiting("tokens.manage"))]
TokensPost = Annotated[Visit, Depends(posting("tokens.manage"))]
INTEGRATIONS = f"{PAGES_PATH}/integrations"
TOKENS = f"{PAGES_PATH}/tokens"

TOKEN_LIFETIMES = ((7, "7 days"), (30, "30 days"), (90, "90 days"), (365, "a year"), (0, "never"))
"""The lifetimes the token form offers (0: no expiry); 90 days, the API's default, is
chosen first."""


def _actor(visit: Visit) -> audit.Actor:
    return audit.Actor(user_id=visit.user.id, client_address=visit.address)


async def _integrations_view(
    visit: Visit, keyring: Keyring, chosen: str | None = None, **extra: Any
) -> HTMLResponse:
    services = await catalogue.list_services(visit.session)
    return visit.render(
        "integrations.html",
        integrations=await changes.personal(visit.session, keyring, visit.user),
        services=services,
        service=next((s for s in services if s.slug == chosen), services[0]),
        **extra,
    )


@router.get(INTEGRATIONS)
async def integrations_page(
    visit: IntegrationsVisit, runtime: RuntimeDep, service: str | None = None
) -> HTMLResponse:
    """The user's integrations, secrets masked, and the form to add one (for the chosen
    service). Needs ``integrations.manage``."""
    return await _integrations_view(visit, runtime.keyring, service)


@router.post(INTEGRATIONS)
async def add_integration(
    visit: IntegrationsPost,
    runtime: RuntimeDep,
    service: Annotated[str, Form(max_length=64)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
) -> HTMLResponse:
    """Store credentials for a service, for the user only. Needs ``integrations.manage``."""
    session = visit.session
    try:
        fields = (await catalogue.get_service(session, service)).fields
        sent = forms.credentials(fields, await visit.request.form())
        body = IntegrationCreate(service=service, name=name or None, credentials=sent)
        async with undone_if_refused(session):
            created = await integrations.create(
                session,
                runtime.keyring,
                integrations.IntegrationInput(body.service, body.name, body.credentials),
                owner_user=visit.user,
                owner_org=None,
                actor=_actor(visit),
            )
    except (ValidationError, TollgateError) as refused:
        error = problem(refused)
        return await _integrations_view(
            visit, runtime.keyring, service, error=error, error_for="add"
        )
    await commit(session)
    notice = f"Added {created.name}: its secrets are stored encrypted."
    return await _integrations_view(visit, runtime.keyring, service, notice=notice)


async def _edit_view(
    visit: Visit, keyring: Keyring, integration_id: int, error: str | None = None
) -> HTMLResponse:
    integration = await changes.own(visit.session, integration_id, visit.user)
    return visit.render(
        "integration_edit.html",
        integration=await changes.describe(visit.session, keyring, integration),
        service=await catalogue.get_service(visit.session, integration.service),
        error=error,
        error_for="edit",
    )


@router.get(f"{INTEGRATIONS}/{{integration_id}}")
async def integration_page(
    integration_id: PathId, visit: IntegrationsVisit, runtime: RuntimeDep
) -> HTMLResponse:
    """One of the user's integrations, to change (secrets are never shown, only replaced).
    Needs ``integrations.manage``."""
    return await _edit_view(visit, runtime.keyring, integration_id)


@router.post(f"{INTEGRATIONS}/{{integration_id}}")
async def change_integration(
    integration_id: PathId,
    visit: IntegrationsPost,
    runtime: RuntimeDep,
    name: Annotated[str, Form(max_length=200)] = "",
) -> HTMLResponse:
    """Rename an integration or replace some of its values; empty fields keep theirs.
    Needs ``integrations.manage``."""
    session = visit.session
    integration = await changes.own(session, integration_id, visit.user)
    try:
        fields = (await catalogue.get_service(session, integration.service)).fields
        sent = forms.credentials(fields, await visit.request.form())
        body = IntegrationUpdate(name=name or None, credentials=sent)
        wanted = integrations.IntegrationChanges(name=body.name, credentials=body.credentials)
        async with undone_if_refused(session):
            await changes.change(session, runtime.keyring, integration, wanted, _actor(visit))
    except (ValidationError, TollgateError) as refused:
        return await _edit_view(visit, runtime.keyring, integration_id, problem(refused))
    await commit(session)
    return await _integrations_view(visit, runtime.keyring, notice=f"Saved {integration.name}.")


@router.post(f"{INTEGRATIONS}/{{integration_id}}/status")
async def switch_integration(
    integration_id: PathId,
    visit: IntegrationsPost,
    runtime: RuntimeDep,
    status: Annotated[str, Form(pattern="^(ACTIVE|DISABLED)$")] = "DISABLED",
) -> HTMLResponse:
    """Disable an integration (its leases are revoked) or enable it again. Needs
    ``integrations.manage``."""
    integration = await changes.own(visit.session, integration_id, visit.user)
    wanted = integrations.IntegrationChanges(status=IntegrationStatus(status))
    await changes.change(visit.session, runtime.keyring, integration, wanted, _actor(visit))
    await commit(visit.session)
    done = "disabled: its leases were revoked" if status == "DISABLED" else "enabled"
    return await _integrations_view(visit, runtime.keyring, notice=f"{integration.name} is {done}.")


@router.post(f"{INTEGRATIONS}/{{integration_id}}/delete")
async def delete_integration(
    integration_id: PathId, visit: IntegrationsPost, runtime: RuntimeDep
) -> HTMLResponse:
    """Delete an integration and revoke its leases. Needs ``integrations.manage``."""
    integration = await changes.own(visit.session, integration_id, visit.user)
    name = integration.name
    await changes.remove(visit.session, integration, _actor(visit))
    await commit(visit.session)
    return await _integrations_view(visit, runtime.keyring, notice=f"Deleted {name}.")


async def _tokens_view(visit: Visit, **extra: Any) -> HTMLResponse:
    return visit.render(
        "tokens.html",
        tokens=await tokens.list_for_user(visit.session, visit.user.id),
        now=datetime.now(UTC),
        scopes=sorted(tokens.KNOWN_SCOPES),
        lifetimes=TOKEN_LIFETIMES,
        **extra,
    )


@router.get(TOKENS)
async def tokens_page(visit: TokensVisit) -> HTMLResponse:
    """The user's access tokens (prefix, scopes, created, expires, last used) and the form
    to create one. Needs ``tokens.manage``."""
    return await _tokens_view(visit)


@router.post(TOKENS)
async def create_token(
    visit: TokensPost,
    name: Annotated[str, Form(max_length=200)] = "",
    scopes: Annotated[list[str] | None, Form(max_length=10)] = None,
    days: Annotated[str, Form(max_length=5)] = "90",
) -> HTMLResponse:
    """Issue an access token; its value is shown this once. Needs ``tokens.manage``."""
    try:
        lifetime = forms.whole_number(days, "The lifetime") or None
        body = TokenCreate.model_validate(
            {"name": name, "scopes": scopes or [], "expires_in_days": lifetime}
        )
        issued = await tokens.issue(
            visit.session,
            visit.user,
            name=body.name,
            scopes=body.scopes,
            expires_at=tokens.expiry_after(body.expires_in_days),
            actor=_actor(visit),
        )
    except (ValidationError, TollgateError) as refused:
        return await _tokens_view(visit, error=problem(refused), error_for="add")
    await commit(visit.session)
    return await _tokens_view(visit, new_token=issued.full, new_name=body.name)


@router.post(f"{TOKENS}/{{token_id}}/revoke")
async def revoke_token(token_id: PathId, visit: TokensPost) -> HTMLResponse:
    """Revoke one of the user's tokens: it is refused from now on. Needs ``tokens.manage``."""
    token = await tokens.revoke(visit.session, token_id, visit.user, _actor(visit))
    await commit(visit.session)
    return await _tokens_view(visit, notice=f"Revoked {token.name} ({token.token_prefix}…).")
