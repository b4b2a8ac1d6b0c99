"""The service catalogue: which fields each service's credentials have, which are secret."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tollgate.broker.models import ServiceDefinition
from tollgate.core.errors import (
    BadRequest,
    Conflict,
    InvalidCredentialFields,
    NotFound,
)

FieldType = Literal["string", "url", "email", "boolean"]

MAX_FIELD_LENGTH = 8192
"""Longest accepted credential value: room for JWT-sized tokens and PEM keys, no more."""


class ServiceField(BaseModel):
    """One field of a service's credentials."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    label: str | None = Field(default=None, max_length=200)
    type: FieldType = "string"
    required: bool = True
    secret: bool = False


class Service(BaseModel):
    """A service whose credentials Tollgate can keep."""

    slug: str
    name: str
    description: str | None = None
    fields: list[ServiceField]
    builtin: bool = False

    def secret_fields(self) -> set[str]:
        """Names of the fields that are never shown."""
        return {f.name for f in self.fields if f.secret}


def _field(
    name: str, *, secret: bool = False, required: bool = True, kind: FieldType = "string"
) -> ServiceField:
    return ServiceField(name=name, secret=secret, required=required, type=kind)


BUILTIN_SERVICES: dict[str, Service] = {
    service.slug: service.model_copy(update={"builtin": True})
    for service in (
        Service(slug="todoist", name="Todoist", fields=[_field("access_token", secret=True)]),
        Service(
            slug="openai",
            name="OpenAI",
            fields=[
                _field("api_key", secret=True),
                _field("organization", required=False),
                _field("base_url", required=False, kind="url"),
            ],
        ),
        Service(
            slug="jira",
            name="Jira",
            fields=[
                _field("url", kind="url"),
                _field("email", kind="email"),
                _field("api_token", secret=True),
                _field("cloud", required=False, kind="boolean"),
            ],
        ),
        Service(
            slug="notion",
            name="Notion",
            fields=[_field("access_token", secret=True), _field("database_id", required=False)],
        ),
        Service(
            slug="sentry",
            name="Sentry",
            fields=[
                _field("auth_token", secret=True),
                _field("organization", required=False),
                _field("url", required=False, kind="url"),
            ],
        ),
        Service(
            slug="gmail",
            name="Gmail",
            fields=[
                _field("client_id"),
                _field("client_secret", secret=True),
                _field("refresh_token", secret=True),
                _field("access_token", secret=True, required=False),
            ],
        ),
        Service(slug="github", name="GitHub", fields=[_field("access_token", secret=True)]),
        Service(
            slug="slack",
            name="Slack",
            fields=[
                _field("bot_token", secret=True),
                _field("app_token", secret=True, required=False),
                _field("team_id", required=False),
            ],
        ),
    )
}
"""Services every Tollgate knows; admins add more through ``/api/v1/services``."""


def _from_row(row: ServiceDefinition) -> Service:
    return Service(
        slug=row.slug,
        name=row.name,
        description=row.description,
        fields=[ServiceField.model_validate(f) for f in row.fields],
    )


async def list_services(session: AsyncSession) -> list[Service]:
    """Built-in services, then those admins added."""
    rows = (
        await session.execute(select(ServiceDefinition).order_by(ServiceDefinition.slug))
    ).scalars()
    return [*BUILTIN_SERVICES.values(), *(_from_row(r) for r in rows)]


async def get_service(session: AsyncSession, slug: str) -> Service:
    """The service called ``slug``, or NotFound."""
    if slug in BUILTIN_SERVICES:
        return BUILTIN_SERVICES[slug]
    row = (
        await session.execute(select(ServiceDefinition).where(ServiceDefinition.slug == slug))
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"Unknown service '{slug}'", code="service_not_found")
    return _from_row(row)


async def add_service(
    session: AsyncSession,
    *,
    slug: str,
    name: str,
    description: str | None,
    fields: Sequence[ServiceField],
) -> Service:
    """Add a service definition; its slug must be new."""
    if slug in BUILTIN_SERVICES:
        raise Conflict(f"'{slug}' is a built-in service", code="service_exists")
    if len({f.name for f in fields}) != len(fields):
        raise BadRequest("Field names must be unique", code="duplicate_field")
    row = ServiceDefinition(
        slug=slug, name=name, description=description, fields=[f.model_dump() for f in fields]
    )
    session.add(row)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"Service '{slug}' exists", code="service_exists") from exc
    return _from_row(row)


async def delete_service(session: AsyncSession, slug: str) -> None:
    """Remove an admin-added service definition (built-ins cannot be removed)."""
    if slug in BUILTIN_SERVICES:
        raise Conflict("Built-in services cannot be removed", code="service_builtin")
    row = (
        await session.execute(select(ServiceDefinition).where(ServiceDefinition.slug == slug))
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"Unknown service '{slug}'", code="service_not_found")
    await session.delete(row)
    await session.flush()


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def validate_credentials(
    service: Service, given: dict[str, Any], *, partial: bool = False
) -> dict[str, Any]:
    """Check ``given`` against the service's fields; returns the cleaned values.

    Unknown fields, missing required fields (unless ``partial``) and values of the wrong
    type are refused with a 422 naming the field.
    """
    known = {f.name: f for f in service.fields}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise InvalidCredentialFields(
            f"Unknown fields for {service.slug}: {', '.join(unknown)}", unknown
        )
    cleaned: dict[str, Any] = {}
    for name, value in given.items():
        cleaned[name] = _check_value(known[name], value)
    if not partial:
        missing = sorted(n for n, f in known.items() if f.required and n not in cleaned)
        if missing:
            raise InvalidCredentialFields(
                f"Missing fields for {service.slug}: {', '.join(missing)}", missing
            )
    return cleaned


def _check_value(field: ServiceField, value: Any) -> Any:
    if field.type == "boolean":
        if not isinstance(value, bool):
            raise InvalidCredentialFields(f"'{field.name}' must be true or false", [field.name])
        return value
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_FIELD_LENGTH:
        raise InvalidCredentialFields(f"'{field.name}' must be a non-empty string", [field.name])
    if "\x00" in value:
        raise InvalidCredentialFields(f"'{field.name}' contains a NUL character", [field.name])
    if field.type == "url" and not value.startswith(("https://", "http://")):
        raise InvalidCredentialFields(f"'{field.name}' must be an http(s) URL", [field.name])
    if field.type == "email" and not _EMAIL.match(value):
        raise InvalidCredentialFields(f"'{field.name}' must be an email address", [field.name])
    return value
