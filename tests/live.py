"""Real ``tollgate serve`` processes on 127.0.0.1 for tests where processes matter."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from pathlib import Path

import httpx

from tests.waiting import eventually_sync
from tollgate.core.settings import Settings

START_TIMEOUT_SECONDS = 30.0
"""A server that is not healthy by then has failed to start."""

TOLLGATE = str(Path(sys.executable).with_name("tollgate"))


FIXED_PORTS = range(20000, 32000)
"""Where servers started by tests listen: below the kernel's ephemeral range (32768 and up), so
a port chosen now cannot be taken, before the server binds it, by a listener on port 0 (a
server's internal listener) or by an outgoing connection."""


def free_port() -> int:
    """A TCP port below the ephemeral range that nobody listens on right now."""
    for port in random.sample(FIXED_PORTS, 50):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def listening(port: int, process: subprocess.Popen[bytes]) -> bool:
    """Whether ``process`` accepts connections on 127.0.0.1:``port``; raises once it ended."""
    if process.poll() is not None:
        raise RuntimeError(f"the process listening on {port} exited (code {process.returncode})")
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def server_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes a ``tollgate`` process share ``settings``' stores."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_TEST_")}
    env.update(
        TOLLGATE_DATA_DIR=str(settings.data_dir),
        DATABASE_URL=settings.resolved_database_url,
        REDIS_URL=settings.redis_url,
        TOLLGATE_CACHE_PREFIX=settings.cache_prefix,
        JWT_SECRET_KEY=settings.jwt_secret_key,
        SECRET_KEY=settings.secret_key,
        TOLLGATE_ENCRYPTION_KEYS=settings.encryption_keys,
        STRIPE_WEBHOOK_SECRET=settings.stripe_webhook_secret,
        TOLLGATE_LOG_JSON="true",
    )
    env.update(extra)
    return env


@contextmanager
def live_server(env: dict[str, str], log_path: Path, workers: int = 1) -> Iterator[str]:
    """Run ``tollgate serve`` (with ``workers`` processes) until the block ends; yields its URL."""
    port = free_port()
    command = [TOLLGATE, "serve", "--host", "127.0.0.1", "--port", str(port)]
    command.extend(["--workers", str(workers)])
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(base_url, process, log_path)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def wait_healthy(base_url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Wait (bounded) until the server ``process`` at ``base_url`` answers ``/health``; its
    log ``log_path`` is in the failure when it exits or stays unhealthy."""

    def healthy() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text()}")
        try:
            return httpx.get(f"{base_url}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    eventually_sync(
        healthy, lambda: f"server healthy:\n{log_path.read_text()}", START_TIMEOUT_SECONDS
    )


@asynccontextmanager
async def serving(env: dict[str, str], log_path: Path, workers: int = 1) -> AsyncIterator[str]:
    """:func:`live_server` started and stopped off the event loop, for async tests.

    Its health wait and its shutdown block; on the loop they would freeze this process's
    own app (its background jobs, any transaction it has open) while the server waits on it.
    """
    stack = ExitStack()
    base_url = await asyncio.to_thread(
        stack.enter_context, live_server(env, log_path, workers=workers)
    )
    try:
        yield base_url
    finally:
        await asyncio.to_thread(stack.close)
