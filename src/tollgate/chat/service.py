"""The ``/llmchat`` rules (seed 003): connect, chat (JSON or SSE), disconnect, status and
config, for the signed-in user's own session only."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tollgate.chat import llm_settings
from tollgate.chat.conversation import ProviderTimeout, ProviderUnavailable, Usage
from tollgate.chat.llm_settings import ResolvedModel
from tollgate.chat.loop import Event, Limits, ToolSource, TurnRecord, run_turn
from tollgate.chat.providers import chat_model
from tollgate.chat.schemas import ChatInput, ConnectInput, DisconnectInput, GatewayModel
from tollgate.chat.store import SessionConfig, SessionStore
from tollgate.core.cache import CacheLock
from tollgate.core.crypto import MASK, Keyring
from tollgate.core.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    GatewayTimeout,
    NotFound,
    ServiceUnavailable,
    TollgateError,
)
from tollgate.identity.models import User

logger = logging.getLogger(__name__)

TURN_LOCK_SECONDS = 60.0
"""A turn's lock lives this long past its last sign of life (renewed while the turn runs):
a turn on a process that died frees the session within this time."""

ToolSources = Callable[[User, SessionConfig], AbstractAsyncContextManager[ToolSource]]
"""Opens where a session's tools come from, for one user (raises TollgateError if it
cannot: an account not enabled, a server refused)."""


@dataclass(frozen=True)
class LlmCall:
    """One model call of a chat turn: what it cost, for analytics."""

    user_id: int
    model: str
    provider: str
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal


UsageReporter = Callable[[LlmCall], None]


def cost_of(model: ResolvedModel, usage: Usage) -> Decimal:
    """What ``usage`` of ``model`` costs, in US dollars."""
    per_million = Decimal(1_000_000)
    return (
        Decimal(usage.input_tokens) * model.input_price_per_million
        + Decimal(usage.output_tokens) * model.output_price_per_million
    ) / per_million


def sse(event: Event) -> bytes:
    """One server-sent event: ``event: <type>`` and its JSON (a token carries its content)."""
    kind = str(event["type"])
    data = {"content": event["content"]} if kind == "token" else event
    return f"event: {kind}\ndata: {json.dumps(data, default=str)}\n\n".encode()


class ChatService:
    """Chat sessions of every user, served by any process."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        keyring: Keyring,
        store: SessionStore,
        tool_sources: ToolSources,
        report: UsageReporter,
        limits: Limits,
    ) -> None:
        self._sessions = sessions
        self._keyring = keyring
        self.store = store
        self._tool_sources = tool_sources
        self._report = report
        self.limits = limits

    @staticmethod
    def own_id(user: User, given: str | None) -> str:
        """The session id of ``user`` (their id); another user's id is refused."""
        own = str(user.id)
        if given and given not in (own, user.email):
            raise Forbidden("User ID mismatch.", code="user_id_mismatch")
        return own

    async def _model(self, ref: str) -> ResolvedModel:
        async with self._sessions() as session:
            return await llm_settings.resolve_model(session, self._keyring, ref)

    async def connect(self, user: User, body: ConnectInput) -> dict[str, Any]:
        """Start (or restart) the user's session: the model must exist and the tools be
        reachable; the history starts empty."""
        user_id = self.own_id(user, body.user_id)
        model = await self._model(body.llm.model)
        server = body.server
        config = SessionConfig(
            model=body.llm.model,
            temperature=body.llm.temperature,
            max_tokens=body.llm.max_tokens,
            server_url=server.url if server else None,
            server_token=server.auth_token if server else None,
            streaming=body.streaming,
        )
        async with self._tool_sources(user, config) as source:
            tools = [t.name for t in await source.tools()]
        await self.store.save_config(user_id, config)
        return {
            "status": "connected",
            "user_id": user_id,
            "provider": model.provider_name,
            "model": model.model_id,
            "tool_count": len(tools),
            "tools": tools,
        }

    async def _prepared(self, user: User, body: ChatInput) -> tuple[str, SessionConfig]:
        user_id = self.own_id(user, body.user_id)
        if not body.message.strip():
            raise BadRequest("Message cannot be empty", code="empty_message")
        config = await self.store.config(user_id)
        if config is None:
            raise BadRequest(
                "No active session found. Please connect to a server first.", code="no_session"
            )
        return user_id, config

    async def _lock(self, user_id: str) -> CacheLock:
        lock = self.store.turn_lock(user_id, TURN_LOCK_SECONDS)
        if not await lock.acquire(blocking=False):
            raise Conflict(
                "A chat turn is already running for this session; wait for it to finish.",
                code="chat_busy",
            )
        return lock

    async def chat(self, user: User, body: ChatInput) -> dict[str, Any]:
        """One turn, answered when it is done (seed 003's non-streaming shape)."""
        user_id, config = await self._prepared(user, body)
        lock = await self._lock(user_id)
        record = TurnRecord()
        final: Event = {}
        try:
            async for event in self._turn(user, user_id, config, body.message, record, lock):
                final = event if event["type"] == "final" else final
        except ProviderTimeout as exc:
            raise GatewayTimeout(
                "Request timed out. The LLM took too long to respond.", code="llm_timeout"
            ) from exc
        except ProviderUnavailable as exc:
            raise ServiceUnavailable(
                f"LLM provider unavailable: {exc}", code="llm_unavailable"
            ) from exc
        finally:
            await lock.release()
        metadata = record.metadata()
        return {
            "user_id": user_id,
            "response": final.get("text", ""),
            **{k: metadata[k] for k in ("tool_used", "tools", "tool_invocations", "elapsed_ms")},
            "input_tokens": metadata["input_tokens"],
            "output_tokens": metadata["output_tokens"],
            "credits_charged": metadata["credits_charged"],
        }

    async def chat_stream(self, user: User, body: ChatInput) -> AsyncIterator[bytes]:
        """One turn as server-sent events. What can be refused is refused before the stream
        starts (a 4xx); a failure during it is an ``error`` event saying whether to retry."""
        user_id, config = await self._prepared(user, body)
        lock = await self._lock(user_id)
        return self._stream(user, user_id, config, body.message, lock)

    async def _stream(
        self, user: User, user_id: str, config: SessionConfig, message: str, lock: CacheLock
    ) -> AsyncIterator[bytes]:
        try:
            async for event in self._turn(user, user_id, config, message, TurnRecord(), lock):
                yield sse(event)
        except ProviderTimeout:
            error = "Request timed out waiting for LLM response"
            yield sse({"type": "error", "error": error, "recoverable": True})
        except ProviderUnavailable as exc:
            error = f"LLM provider unavailable: {exc}"
            yield sse({"type": "error", "error": error, "recoverable": True})
        except TollgateError as exc:
            yield sse({"type": "error", "error": exc.message, "recoverable": False})
        except Exception:
            logger.exception("chat turn of user %s failed", user_id)
            yield sse({"type": "error", "error": "Unexpected error", "recoverable": False})
        finally:
            await lock.release()

    async def _turn(
        self,
        user: User,
        user_id: str,
        config: SessionConfig,
        message: str,
        record: TurnRecord,
        lock: CacheLock,
    ) -> AsyncIterator[Event]:
        model = await self._model(config.model)
        llm = chat_model(model, config.temperature, config.max_tokens)
        history = await self.store.history(user_id)
        renewed = time.monotonic()

        async def count(usage: Usage) -> None:
            self._report(
                LlmCall(
                    user.id,
                    model.model_id,
                    model.provider_name,
                    usage.input_tokens,
                    usage.output_tokens,
                    cost_of(model, usage),
                )
            )

        async with self._tool_sources(user, config) as source:
            async for event in run_turn(llm, source, history, message, self.limits, count, record):
                if time.monotonic() - renewed > TURN_LOCK_SECONDS / 3:
                    await lock.extend(TURN_LOCK_SECONDS)
                    renewed = time.monotonic()
                yield event
        await self.store.save_history(user_id, config, history)

    async def disconnect(self, user: User, body: DisconnectInput) -> dict[str, Any]:
        """End the user's session and clear its history (safe to repeat)."""
        user_id = self.own_id(user, body.user_id)
        if not await self.store.forget(user_id):
            return {
                "status": "no_active_session",
                "user_id": user_id,
                "message": "No active session to disconnect",
            }
        return {
            "status": "disconnected",
            "user_id": user_id,
            "message": "Successfully disconnected",
        }

    async def status(self, user: User, user_id: str) -> dict[str, Any]:
        """Whether the user has a session."""
        own = self.own_id(user, user_id)
        return {"user_id": own, "connected": await self.store.config(own) is not None}

    async def config(self, user: User, user_id: str) -> dict[str, Any]:
        """The session's configuration, secrets masked."""
        own = self.own_id(user, user_id)
        config = await self.store.config(own)
        if config is None:
            raise NotFound("No config found for this user.", code="no_config")
        return config.shown(MASK)

    async def models(self) -> dict[str, Any]:
        """The models a session may use."""
        async with self._sessions() as session:
            found: list[GatewayModel] = await llm_settings.gateway_models(session)
        return {"models": [m.model_dump() for m in found], "count": len(found)}
