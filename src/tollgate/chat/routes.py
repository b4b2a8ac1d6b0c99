"""``/llmchat`` (seed 003) and the LLM settings admins keep (``/api/v1/llm``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response
from fastapi.responses import StreamingResponse

from tollgate.chat import llm_settings
from tollgate.chat.schemas import (
    ChatInput,
    ConnectInput,
    DisconnectInput,
    ModelCreate,
    ModelOut,
    ProviderCreate,
    ProviderOut,
    ProviderUpdate,
)
from tollgate.chat.service import ChatService
from tollgate.core.deps import RuntimeDep, SessionDep
from tollgate.core.state import component
from tollgate.identity.deps import require
from tollgate.identity.models import User

router = APIRouter(prefix="/llmchat", tags=["llm chat"])
settings_router = APIRouter(prefix="/api/v1/llm", tags=["llm settings"])

ChatDep = Annotated[ChatService, Depends(component(ChatService))]
Invoker = Annotated[User, Depends(require("llm.invoke"))]
Reader = Annotated[User, Depends(require("llm.read"))]
LlmAdmin = Annotated[User, Depends(require("llm.manage"))]
ProviderName = Annotated[str, Path(pattern=r"^[a-z][a-z0-9-]{0,63}$")]

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.post("/connect")
async def connect(body: ConnectInput, user: Invoker, chat: ChatDep) -> dict[str, Any]:
    """Start the caller's chat session with a configured model. Needs ``llm.invoke``."""
    return await chat.connect(user, body)


@router.post("/chat", response_model=None)
async def chat_turn(
    body: ChatInput, user: Invoker, chat: ChatDep
) -> dict[str, Any] | StreamingResponse:
    """One message and its answer, as JSON or (``streaming``) as server-sent events:
    ``token``, ``tool_start``, ``tool_end``, ``tool_error``, ``final``, ``error``.
    Needs ``llm.invoke``."""
    if body.streaming:
        events = await chat.chat_stream(user, body)
        return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)
    return await chat.chat(user, body)


@router.post("/disconnect")
async def disconnect(body: DisconnectInput, user: Invoker, chat: ChatDep) -> dict[str, Any]:
    """End the caller's session and clear its history. Needs ``llm.invoke``."""
    return await chat.disconnect(user, body)


@router.get("/status/{user_id}")
async def status(user_id: str, user: Reader, chat: ChatDep) -> dict[str, Any]:
    """Whether the caller has a session (``user_id`` must be the caller's). Needs
    ``llm.read``."""
    return await chat.status(user, user_id)


@router.get("/config/{user_id}")
async def config(user_id: str, user: Reader, chat: ChatDep) -> dict[str, Any]:
    """The caller's session configuration, secrets masked. Needs ``llm.read``."""
    return await chat.config(user, user_id)


@router.get("/gateway/models")
async def gateway_models(_: Reader, chat: ChatDep) -> dict[str, Any]:
    """The models a session may use. Needs ``llm.read``."""
    return await chat.models()


@settings_router.get("/providers", response_model=list[ProviderOut])
async def list_providers(_: LlmAdmin, session: SessionDep) -> list[ProviderOut]:
    """Every provider, API keys masked. Needs ``llm.manage``."""
    return [llm_settings.provider_out(p) for p in await llm_settings.list_providers(session)]


@settings_router.post("/providers", response_model=ProviderOut, status_code=201)
async def add_provider(
    body: ProviderCreate, _: LlmAdmin, session: SessionDep, runtime: RuntimeDep
) -> ProviderOut:
    """Add a provider (its API key is stored encrypted). Needs ``llm.manage``."""
    provider = await llm_settings.create_provider(session, runtime.keyring, body)
    return llm_settings.provider_out(provider)


@settings_router.patch("/providers/{name}", response_model=ProviderOut)
async def update_provider(
    name: ProviderName,
    body: ProviderUpdate,
    _: LlmAdmin,
    session: SessionDep,
    runtime: RuntimeDep,
) -> ProviderOut:
    """Change a provider. Needs ``llm.manage``."""
    provider = await llm_settings.get_provider(session, name)
    await llm_settings.update_provider(session, runtime.keyring, provider, body)
    return llm_settings.provider_out(provider)


@settings_router.delete("/providers/{name}", status_code=204)
async def remove_provider(name: ProviderName, _: LlmAdmin, session: SessionDep) -> Response:
    """Remove a provider and its models. Needs ``llm.manage``."""
    await llm_settings.delete_provider(session, await llm_settings.get_provider(session, name))
    return Response(status_code=204)


@settings_router.get("/models", response_model=list[ModelOut])
async def list_models(_: LlmAdmin, session: SessionDep) -> list[ModelOut]:
    """Every model with its provider. Needs ``llm.manage``."""
    return [llm_settings.model_out(m, p) for m, p in await llm_settings.list_models(session)]


@settings_router.post("/models", response_model=ModelOut, status_code=201)
async def add_model(body: ModelCreate, _: LlmAdmin, session: SessionDep) -> ModelOut:
    """Add a model of a provider, with its capabilities and prices. Needs ``llm.manage``."""
    model, provider = await llm_settings.create_model(session, body)
    return llm_settings.model_out(model, provider)


@settings_router.delete("/models/{model_id}", status_code=204)
async def remove_model(model_id: int, _: LlmAdmin, session: SessionDep) -> Response:
    """Remove a model. Needs ``llm.manage``."""
    await llm_settings.delete_model(session, model_id)
    return Response(status_code=204)
