"""A chat session across processes (PostgreSQL + Redis): connected on one process, used from
another with the same history, and never run by both at once."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import anyio
import httpx

from tests.chat.helpers import configure, connected, post
from tests.chat.scripted import ScriptedLLM
from tests.conftest import require_redis
from tests.gateway.conftest import Gateway, Upstream, quick_member
from tests.live import server_env, serving
from tests.waiting import eventually
from tollgate.core.runtime import Runtime
from tollgate.core.settings import Settings


def said(request: dict[str, Any]) -> list[str]:
    """The contents of a model request's messages, after the system prompt."""
    return [str(m.get("content")) for m in request["messages"][1:]]


async def test_a_session_moves_between_processes_and_never_runs_twice_at_once(
    settings: Settings, upstream: Upstream, llm: tuple[ScriptedLLM, str], tmp_path: Path
) -> None:
    require_redis()
    scripted, llm_url = llm
    runtime = Runtime.build(settings)
    env = server_env(settings)
    try:
        async with serving(env, tmp_path / "a.log") as a:
            on_a = Gateway(a, runtime, None)
            await configure(on_a, upstream.url, llm_url, "openai")
            user = await quick_member(on_a, credits=10)
            async with serving(env, tmp_path / "b.log") as b:
                on_b = Gateway(b, runtime, None)
                await connected(on_a, user)
                scripted.say("Hello from B.")
                first = await post(on_b, user, "/llmchat/chat", {"message": "Who answers?"})
                scripted.say("Still here, on A.")
                second = await post(on_a, user, "/llmchat/chat", {"message": "And now?"})
                busy, finished = await _two_turns_at_once(on_a, on_b, user, scripted)
    finally:
        await runtime.close()

    assert first.status_code == 200, first.text
    assert first.json()["response"] == "Hello from B."
    assert second.json()["response"] == "Still here, on A."
    assert said(scripted.requests[1]) == ["Who answers?", "Hello from B.", "And now?"]
    assert busy.status_code == 409
    assert busy.json()["detail"]["code"] == "chat_busy"
    assert finished.status_code == 200, finished.text
    assert finished.json()["response"] == "Slow, but done."


async def _two_turns_at_once(
    on_a: Gateway, on_b: Gateway, user: Any, scripted: ScriptedLLM
) -> tuple[httpx.Response, httpx.Response]:
    """A turn on A held at its model call while B tries one: (B's answer, A's answer)."""
    held = threading.Event()
    scripted.say("Slow, but done.", hold=held)
    answers: dict[str, httpx.Response] = {}
    asked = len(scripted.requests)

    async def turn_on_a() -> None:
        answers["a"] = await post(on_a, user, "/llmchat/chat", {"message": "Take your time"})

    async with anyio.create_task_group() as group:
        group.start_soon(turn_on_a)

        async def model_called() -> bool:
            return len(scripted.requests) > asked

        await eventually(model_called, "A's turn reached the model")
        try:
            answers["b"] = await post(on_b, user, "/llmchat/chat", {"message": "Me too"})
        finally:
            held.set()
    return answers["b"], answers["a"]
