"""The chat's tests use the gateway's live-server fixtures and a scripted LLM provider."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.chat.scripted import ScriptedLLM
from tests.gateway.conftest import gateway, gateway_settings, upstream
from tests.gateway.upstream import serve_in_thread

__all__ = ["gateway", "gateway_settings", "llm", "upstream"]


@pytest.fixture
def llm() -> Iterator[tuple[ScriptedLLM, str]]:
    """A scripted LLM provider on 127.0.0.1 and its base URL."""
    scripted = ScriptedLLM()
    url, stop = serve_in_thread(scripted, "")
    try:
        yield scripted, url
    finally:
        stop()
