"""LLM settings: the providers admins configure (API keys sealed) and their models."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tollgate.chat.models import LlmModel, LlmProvider
from tollgate.chat.schemas import (
    GatewayModel,
    ModelCreate,
    ModelOut,
    ProviderCreate,
    ProviderOut,
    ProviderUpdate,
)
from tollgate.core.crypto import MASK, Keyring
from tollgate.core.database import database_now
from tollgate.core.encrypted import associated_data
from tollgate.core.errors import BadRequest, Conflict, NotFound


@dataclass(frozen=True)
class ResolvedModel:
    """Everything a chat turn needs to call one model (the API key in clear: never stored
    outside the database, never returned)."""

    model_ref: str
    model_id: str
    provider_name: str
    kind: str
    base_url: str | None
    api_key: str | None
    timeout_seconds: float
    input_price_per_million: Decimal
    output_price_per_million: Decimal
    supports_streaming: bool
    supports_function_calling: bool


def _seal_key(keyring: Keyring, provider: LlmProvider, api_key: str | None) -> str | None:
    if not api_key:
        return None
    aad = associated_data("llm_providers", "api_key_envelope", provider.id)
    return keyring.encrypt_text(api_key, aad)


def _open_key(keyring: Keyring, provider: LlmProvider) -> str | None:
    if not provider.api_key_envelope:
        return None
    aad = associated_data("llm_providers", "api_key_envelope", provider.id)
    return keyring.decrypt_text(provider.api_key_envelope, aad)


def provider_out(provider: LlmProvider) -> ProviderOut:
    """A provider as admins see it."""
    return ProviderOut(
        id=provider.id,
        name=provider.name,
        kind=provider.kind,
        base_url=provider.base_url,
        api_key=MASK if provider.api_key_envelope else None,
        timeout_seconds=provider.timeout_seconds,
        enabled=provider.enabled,
        created_at=provider.created_at,
    )


async def create_provider(
    session: AsyncSession, keyring: Keyring, body: ProviderCreate
) -> LlmProvider:
    """Store a provider; its name must be new."""
    provider = LlmProvider(
        name=body.name,
        kind=body.kind,
        base_url=body.base_url,
        timeout_seconds=body.timeout_seconds,
        enabled=body.enabled,
    )
    session.add(provider)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"A provider named {body.name} exists", code="provider_exists") from exc
    provider.api_key_envelope = _seal_key(keyring, provider, body.api_key)
    await session.flush()
    return provider


async def get_provider(session: AsyncSession, name: str) -> LlmProvider:
    """The provider called ``name``, or NotFound."""
    query = select(LlmProvider).where(LlmProvider.name == name)
    found = (await session.execute(query)).scalar_one_or_none()
    if found is None:
        raise NotFound(f"No LLM provider named {name}", code="provider_not_found")
    return found


async def list_providers(session: AsyncSession) -> Sequence[LlmProvider]:
    """Every provider, by name."""
    return (await session.execute(select(LlmProvider).order_by(LlmProvider.name))).scalars().all()


async def update_provider(
    session: AsyncSession, keyring: Keyring, provider: LlmProvider, body: ProviderUpdate
) -> LlmProvider:
    """Apply the given changes."""
    changes = body.model_dump(exclude_unset=True)
    if "api_key" in changes:
        provider.api_key_envelope = _seal_key(keyring, provider, changes.pop("api_key"))
    for field, value in changes.items():
        if value is not None:
            setattr(provider, field, value)
    provider.updated_at = await database_now(session)
    await session.flush()
    return provider


async def delete_provider(session: AsyncSession, provider: LlmProvider) -> None:
    """Remove a provider and its models."""
    await session.delete(provider)
    await session.flush()


def model_out(model: LlmModel, provider: LlmProvider) -> ModelOut:
    """A model as admins see it."""
    return ModelOut(
        id=model.id,
        provider=provider.name,
        model_id=model.model_id,
        display_name=model.display_name,
        supports_streaming=model.supports_streaming,
        supports_function_calling=model.supports_function_calling,
        supports_vision=model.supports_vision,
        input_price_per_million=model.input_price_per_million,
        output_price_per_million=model.output_price_per_million,
        enabled=model.enabled,
    )


async def create_model(session: AsyncSession, body: ModelCreate) -> tuple[LlmModel, LlmProvider]:
    """Store a model of an existing provider."""
    provider = await get_provider(session, body.provider)
    fields = body.model_dump(exclude={"provider"})
    model = LlmModel(provider_id=provider.id, **fields)
    session.add(model)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise Conflict(
            f"{body.provider} already offers {body.model_id}", code="model_exists"
        ) from exc
    return model, provider


async def list_models(session: AsyncSession) -> list[tuple[LlmModel, LlmProvider]]:
    """Every model with its provider."""
    query = (
        select(LlmModel, LlmProvider)
        .join(LlmProvider, LlmProvider.id == LlmModel.provider_id)
        .order_by(LlmProvider.name, LlmModel.model_id)
    )
    return [(m, p) for m, p in (await session.execute(query)).all()]


async def delete_model(session: AsyncSession, model_id: int) -> None:
    """Remove a model, or NotFound."""
    model = await session.get(LlmModel, model_id)
    if model is None:
        raise NotFound(f"No LLM model {model_id}", code="model_not_found")
    await session.delete(model)
    await session.flush()


async def gateway_models(session: AsyncSession) -> list[GatewayModel]:
    """The enabled models of enabled providers, as ``/llmchat/gateway/models`` lists them."""
    return [
        GatewayModel(
            id=str(model.id),
            model_id=model.model_id,
            model_name=model.display_name or model.model_id,
            provider_id=str(provider.id),
            provider_name=provider.name,
            provider_type=provider.kind,
            supports_streaming=model.supports_streaming,
            supports_function_calling=model.supports_function_calling,
            supports_vision=model.supports_vision,
        )
        for model, provider in await list_models(session)
        if model.enabled and provider.enabled
    ]


async def resolve_model(session: AsyncSession, keyring: Keyring, ref: str) -> ResolvedModel:
    """The enabled model ``ref`` names (its id, or its ``model_id``); BadRequest otherwise."""
    for model, provider in await list_models(session):
        if not (model.enabled and provider.enabled):
            continue
        if ref in (str(model.id), model.model_id):
            return ResolvedModel(
                model_ref=ref,
                model_id=model.model_id,
                provider_name=provider.name,
                kind=provider.kind,
                base_url=provider.base_url,
                api_key=_open_key(keyring, provider),
                timeout_seconds=provider.timeout_seconds,
                input_price_per_million=model.input_price_per_million,
                output_price_per_million=model.output_price_per_million,
                supports_streaming=model.supports_streaming,
                supports_function_calling=model.supports_function_calling,
            )
    raise BadRequest(
        f"Unknown or disabled model: {ref}. See GET /llmchat/gateway/models",
        code="model_not_found",
    )
