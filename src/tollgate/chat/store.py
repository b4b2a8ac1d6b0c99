"""Chat sessions in the cache (Redis, or memory in one process), so any process serves any
user's session: the configuration and the history, both sealed with the deployment's keys
(the configuration may hold a server token), kept for a TTL refreshed on every use.

One turn at a time per session: a turn holds a lock with an owner check (only its holder
releases or extends it) whose TTL is renewed after each step. A turn on a process that died
leaves a lock that expires; the next turn, on any process, takes the session over.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tollgate.chat.conversation import Message
from tollgate.core.cache import Cache, CacheLock
from tollgate.core.crypto import CryptoError, Keyring

CONFIG_KEY = "llmchat:config:"
HISTORY_KEY = "llmchat:history:"
TURN_LOCK = "llmchat:turn:"
ASSOCIATED_DATA = "tollgate:llmchat:"


@dataclass(frozen=True)
class SessionConfig:
    """What ``/llmchat/connect`` chose: the model, where tools come from, streaming."""

    model: str
    temperature: float | None
    max_tokens: int | None
    server_url: str | None
    server_token: str | None
    streaming: bool

    def to_json(self) -> dict[str, Any]:
        """The stored form."""
        return {
            "model": self.model,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "server_url": self.server_url,
            "server_token": self.server_token,
            "streaming": self.streaming,
        }

    def shown(self, mask: str) -> dict[str, Any]:
        """The configuration as ``/llmchat/config`` answers it: the token masked."""
        return {
            "mcp_server": {
                "url": self.server_url,
                "transport": "streamable_http",
                "auth_token": mask if self.server_token else None,
            },
            "llm": {
                "provider": "gateway",
                "config": {
                    "model": self.model,
                    "temperature": self.temperature,
                    "max_tokens": self.max_tokens,
                },
            },
            "enable_streaming": self.streaming,
        }


class SessionStore:
    """Sessions by user id."""

    def __init__(self, cache: Cache, keyring: Keyring, *, ttl: float, history_limit: int) -> None:
        self._cache = cache
        self._keyring = keyring
        self.ttl = ttl
        self.history_limit = history_limit

    def _seal(self, user_id: str, data: Any) -> str:
        return self._keyring.encrypt_text(json.dumps(data), ASSOCIATED_DATA + user_id)

    def _open(self, user_id: str, sealed: str | None) -> Any:
        if sealed is None:
            return None
        try:
            return json.loads(self._keyring.decrypt_text(sealed, ASSOCIATED_DATA + user_id))
        except (CryptoError, ValueError):
            return None  # sealed under a key this deployment no longer has: start afresh

    async def save_config(self, user_id: str, config: SessionConfig) -> None:
        """Keep a new session's configuration (its history starts empty)."""
        await self._cache.set(CONFIG_KEY + user_id, self._seal(user_id, config.to_json()), self.ttl)
        await self._cache.delete(HISTORY_KEY + user_id)

    async def config(self, user_id: str) -> SessionConfig | None:
        """The session's configuration; None when there is no session."""
        data = self._open(user_id, await self._cache.get(CONFIG_KEY + user_id))
        return SessionConfig(**data) if isinstance(data, dict) else None

    async def history(self, user_id: str) -> list[Message]:
        """The session's messages, oldest first."""
        data = self._open(user_id, await self._cache.get(HISTORY_KEY + user_id))
        return [Message.from_json(m) for m in data] if isinstance(data, list) else []

    async def save_history(
        self, user_id: str, config: SessionConfig, history: list[Message]
    ) -> None:
        """Keep the last ``history_limit`` messages and refresh the session's TTL."""
        kept = _without_orphan_tool_results(history[-self.history_limit :])
        sealed = self._seal(user_id, [m.to_json() for m in kept])
        await self._cache.set(HISTORY_KEY + user_id, sealed, self.ttl)
        await self._cache.set(CONFIG_KEY + user_id, self._seal(user_id, config.to_json()), self.ttl)

    async def forget(self, user_id: str) -> bool:
        """End the session; whether there was one."""
        existed = await self._cache.get(CONFIG_KEY + user_id) is not None
        await self._cache.delete(CONFIG_KEY + user_id, HISTORY_KEY + user_id)
        return existed

    def turn_lock(self, user_id: str, ttl: float) -> CacheLock:
        """The lock a turn of ``user_id``'s session holds."""
        return self._cache.lock(TURN_LOCK + user_id, ttl)


def _without_orphan_tool_results(messages: list[Message]) -> list[Message]:
    """Cutting the history may leave tool results whose request was cut: providers refuse
    those, so the kept history starts at a user message."""
    for index, message in enumerate(messages):
        if message.role == "user":
            return messages[index:]
    return []
