"""tools/call through the gateway against the same upstream called directly.

Starts the test upstream and ``tollgate serve`` as separate processes on 127.0.0.1 (a fresh
SQLite database, or a scratch PostgreSQL database with --database-url), then prints, at
concurrency 1 and 10: p50 and p99 latency, calls per second, and the gateway/direct
ratios; and the time of tools/list with 500 tools over 10 upstreams.

Usage: python bench/gateway_bench.py [--calls 400] [--mode 2026-07-28|legacy]
       [--database-url postgresql://...] [--redis-url redis://...]
Target (not a test): at most +2 ms at p50 at concurrency 1; at least half the direct
throughput at concurrency 10.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from scratch import scratch_database
from tollgate.accounts import credits
from tollgate.core.crypto import generate_key_spec
from tollgate.core.database import transaction
from tollgate.core.runtime import Runtime
from tollgate.core.settings import Settings
from tollgate.identity.service import create_user, issue_access_token
from tollgate.migrate import upgrade_to_head

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM = ROOT / "tests" / "gateway" / "upstream.py"
TOLLGATE = str(Path(sys.executable).with_name("tollgate"))
START_SECONDS = 30.0


@contextmanager
def upstream_process(name: str, extra_tools: int = 0) -> Iterator[str]:
    """The test upstream in its own process; yields its URL."""
    process = subprocess.Popen(
        [sys.executable, str(UPSTREAM), "http", "--name", name, "--extra-tools", str(extra_tools)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("LISTENING "):
            raise RuntimeError("the upstream did not start")
        yield line.split()[1]
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def tollgate_process(env: dict[str, str], port: int) -> Iterator[str]:
    """``tollgate serve`` in its own process; yields its base URL once healthy."""
    process = subprocess.Popen(
        [TOLLGATE, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            raise RuntimeError("tollgate did not start")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)


@asynccontextmanager
async def connect(url: str, mode: str, key: str | None = None) -> AsyncIterator[Client]:
    """The official client on ``url``."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120))
    try:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
            yield client
    finally:
        await http.aclose()


async def measure(
    url: str, mode: str, key: str | None, tool: str, calls: int, workers: int
) -> dict[str, float]:
    """p50, p99 (ms) and calls per second of ``tool`` over ``workers`` clients."""
    latencies: list[float] = []

    async def worker(count: int) -> None:
        async with connect(url, mode, key) as client:
            await client.call_tool(tool, {"text": "warm"})
            for _ in range(count):
                started = time.perf_counter()
                result = await client.call_tool(tool, {"text": "hello"})
                latencies.append((time.perf_counter() - started) * 1000)
                assert not result.is_error, result

    started = time.perf_counter()
    await asyncio.gather(*(worker(calls // workers) for _ in range(workers)))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "p50": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "rate": len(ordered) / elapsed,
    }


async def prepare(settings: Settings) -> tuple[str, str]:
    """A superuser's JWT and an account key with plenty of credits."""
    runtime = Runtime.build(settings)
    try:
        async with transaction(runtime.sessions) as session:
            user = await create_user(
                session,
                username="bench",
                email="bench@example.com",
                password=None,
                is_superuser=True,
            )
        return issue_access_token(settings, user), ""
    finally:
        await runtime.close()


async def fund(settings: Settings, account_id: int) -> None:
    """Give the bench account enough credits for every call."""
    runtime = Runtime.build(settings)
    try:
        async with transaction(runtime.sessions) as session:
            await credits.adjust(
                session,
                account_id,
                10_000_000,
                reason="bench",
                actor="bench",
                idempotency_key="bench",
            )
    finally:
        await runtime.close()


def line(label: str, figures: dict[str, float]) -> str:
    p50, p99, rate = figures["p50"], figures["p99"], figures["rate"]
    return f"  {label:<9} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   {rate:8.1f} calls/s"


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with scratch_database(args.database_url, Path(tmp)) as url:
            await asyncio.to_thread(upgrade_to_head, url)
            settings = Settings(
                data_dir=Path(tmp),
                database_url=url,
                redis_url=args.redis_url or "",
                cache_prefix=f"bench:{uuid.uuid4().hex}:",
                jwt_secret_key="bench-" + "x" * 40,
                secret_key="bench",
                encryption_keys=generate_key_spec(),
            )
            jwt, _ = await prepare(settings)
            env = {
                **os.environ,
                "DATABASE_URL": url,
                "REDIS_URL": settings.redis_url,
                "TOLLGATE_CACHE_PREFIX": settings.cache_prefix,
                "TOLLGATE_DATA_DIR": tmp,
                "JWT_SECRET_KEY": settings.jwt_secret_key,
                "SECRET_KEY": settings.secret_key,
                "TOLLGATE_ENCRYPTION_KEYS": settings.encryption_keys,
                "TOLLGATE_KEY_RATE_LIMIT_PER_MINUTE": "100000000",
                "LOG_LEVEL": "WARNING",
            }
            await bench(args, settings, env, jwt)


async def bench(
    args: argparse.Namespace, settings: Settings, env: dict[str, str], jwt: str
) -> None:
    from tests.live import free_port

    headers = {"Authorization": f"Bearer {jwt}"}
    with upstream_process("echo") as upstream_url, tollgate_process(env, free_port()) as base:
        async with httpx.AsyncClient(base_url=base, timeout=60, headers=headers) as http:
            added = await http.post(
                "/api/v1/upstreams", json={"name": "echo", "url": upstream_url, "price": 1}
            )
            assert added.status_code == 201, added.text
            assert added.json()["state"] == "up", added.text
            enabled = (await http.post("/api/mcp/enable")).json()
        await fund(settings, enabled["account"]["id"])
        key = enabled["mcp_api_key"]
        print(f"tools/call echo, client mode {args.mode}, {args.calls} calls per run")
        rows = {}
        for workers in (1, 10):
            direct = await measure(upstream_url, args.mode, None, "echo", args.calls, workers)
            through = await measure(
                f"{base}/mcp", args.mode, key, "echo__echo", args.calls, workers
            )
            rows[workers] = (direct, through)
            print(f" concurrency {workers}")
            print(line("direct", direct))
            print(line("gateway", through))
            print(
                f"  added p50 {through['p50'] - direct['p50']:+.2f} ms, p50 ratio "
                f"{through['p50'] / direct['p50']:.2f}x, throughput ratio "
                f"{through['rate'] / direct['rate']:.2f}"
            )
    await bench_listing(args, env, headers)


async def bench_listing(
    args: argparse.Namespace, env: dict[str, str], headers: dict[str, str]
) -> None:
    from contextlib import ExitStack

    from tests.live import free_port

    with ExitStack() as stack:
        urls = [stack.enter_context(upstream_process(f"up{i}", extra_tools=45)) for i in range(10)]
        base = stack.enter_context(tollgate_process(env, free_port()))
        async with httpx.AsyncClient(base_url=base, timeout=120, headers=headers) as http:
            await http.delete("/api/v1/upstreams/echo")
            for index, url in enumerate(urls):
                added = await http.post(
                    "/api/v1/upstreams", json={"name": f"up{index}", "url": url}
                )
                assert added.status_code == 201, added.text
            key = (await http.post("/api/mcp/regenerate-key")).json()["mcp_api_key"]
        async with connect(f"{base}/mcp", args.mode, key) as client:
            count = len((await client.list_tools()).tools)
            timings = []
            for _ in range(20):
                started = time.perf_counter()
                await client.list_tools(cache_mode="bypass")
                timings.append((time.perf_counter() - started) * 1000)
        print(
            f"tools/list with {count} tools over 10 upstreams: "
            f"p50 {statistics.median(timings):.2f} ms, max {max(timings):.2f} ms (20 runs)"
        )


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--mode", default="2026-07-28", choices=["2026-07-28", "legacy"])
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")
    asyncio.run(run(parser.parse_args()))
