"""tools/call through the gateway against the same upstream called directly.

Starts the test upstream and ``tollgate serve`` as separate processes on 127.0.0.1 (a fresh
SQLite database, or a scratch PostgreSQL database with --database-url), then prints, at
concurrency 1 and 10: p50 and p99 latency, calls per second, and the gateway/direct
ratios; and the time of tools/list with 500 tools over 10 upstreams.

Also printed: the median of Tollgate's own figure (``_meta["tollgate/overhead_ms"]``) and
the gateway process's CPU time per call (from /proc).

Usage: python bench/gateway_bench.py [--calls 400] [--mode 2026-07-28|legacy|both]
       [--database-url postgresql://...] [--redis-url redis://...] [--all-backends]
       [--no-listing] [--concurrency 1,10] [--repeat 3]
``--all-backends`` runs on SQLite, then on PostgreSQL + Redis (the CI's services by default).
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
OVERHEAD_KEY = "tollgate/overhead_ms"
CI_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
CI_REDIS_URL = "redis://127.0.0.1:6379/0"
UPSTREAM = ROOT / "tests" / "gateway" / "upstream.py"
TOLLGATE = str(Path(sys.executable).with_name("tollgate"))
START_SECONDS = 30.0
SERVE_PREFIX: list[str] = []
"""Put before the ``tollgate`` command (bench/profile_gateway.py runs it under cProfile)."""


@contextmanager
def upstream_process(name: str, extra_tools: int = 0) -> Iterator[str]:
    """The test upstream in its own process; yields its URL."""
    process = subprocess.Popen(
        [
            sys.executable,
            str(UPSTREAM),
            "http",
            "--fast",
            "--name",
            name,
            "--extra-tools",
            str(extra_tools),
        ],
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def tollgate_process(env: dict[str, str], port: int) -> Iterator[tuple[str, int]]:
    """``tollgate serve`` in its own process; yields its base URL once healthy, and its pid."""
    process = subprocess.Popen(
        [*SERVE_PREFIX, TOLLGATE, "serve", "--port", str(port)],
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
        yield base, process.pid
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
    url: str, mode: str, key: str | None, tool: str, calls: int, workers: int, pid: int = 0
) -> dict[str, float]:
    """p50, p99 (ms) and calls per second of ``tool`` over ``workers`` clients; with ``pid``,
    that process's CPU ms per call; and the median overhead the gateway reports."""
    latencies: list[float] = []
    overheads: list[float] = []

    async def worker(count: int) -> None:
        async with connect(url, mode, key) as client:
            await client.call_tool(tool, {"text": "warm"})
            for _ in range(count):
                started = time.perf_counter()
                result = await client.call_tool(tool, {"text": "hello"})
                latencies.append((time.perf_counter() - started) * 1000)
                assert not result.is_error, result
                if result.meta and OVERHEAD_KEY in result.meta:
                    overheads.append(float(result.meta[OVERHEAD_KEY]))

    cpu_before = cpu_seconds(pid) if pid else 0.0
    started = time.perf_counter()
    await asyncio.gather(*(worker(calls // workers) for _ in range(workers)))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    figures = {
        "p50": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "rate": len(ordered) / elapsed,
    }
    if pid:
        figures["cpu_ms"] = (cpu_seconds(pid) - cpu_before) * 1000 / len(ordered)
    if overheads:
        figures["overhead_ms"] = statistics.median(overheads)
    return figures


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


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over repeated runs."""
    return {name: statistics.median(run[name] for run in runs) for name in runs[0]}


def line(label: str, figures: dict[str, float]) -> str:
    """One measured run as a line of the report."""
    p50, p99, rate = figures["p50"], figures["p99"], figures["rate"]
    text = f"  {label:<9} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   {rate:8.1f} calls/s"
    if "cpu_ms" in figures:
        text += f"   cpu {figures['cpu_ms']:5.2f} ms/call"
    if "overhead_ms" in figures:
        text += f"   reported overhead p50 {figures['overhead_ms']:.3f} ms"
    return text


Row = tuple[str, str, int, dict[str, float], dict[str, float]]
"""(backend, client mode, concurrency, direct figures, gateway figures)."""


def summary(rows: list[Row]) -> None:
    """The runs side by side."""
    print()
    print("backend            mode        c   direct p50  gateway p50   added   ratio  thru")
    for backend, mode, workers, direct, through in rows:
        print(
            f"{backend:<18} {mode:<10} {workers:>2}   {direct['p50']:7.2f} ms  "
            f"{through['p50']:7.2f} ms  {through['p50'] - direct['p50']:+6.2f}  "
            f"{through['p50'] / direct['p50']:5.2f}x  {through['rate'] / direct['rate']:4.2f}"
        )


async def run_all(args: argparse.Namespace) -> None:
    """Every backend asked for, then the summary."""
    rows: list[Row] = []
    backends = [(args.database_url, args.redis_url)]
    if args.all_backends:
        backends = [
            (None, None),
            (args.database_url or CI_DATABASE_URL, args.redis_url or CI_REDIS_URL),
        ]
    for database_url, redis_url in backends:
        args.database_url, args.redis_url = database_url, redis_url
        rows.extend(await run(args))
        args.listing = False  # the listing does not depend on the backend
    summary(rows)


async def run(args: argparse.Namespace) -> list[Row]:
    """The runs on one backend."""
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
            return await bench(args, settings, env, jwt)


async def bench(
    args: argparse.Namespace, settings: Settings, env: dict[str, str], jwt: str
) -> list[Row]:
    from tests.live import free_port

    backend = "PostgreSQL+Redis" if args.database_url else "SQLite"
    headers = {"Authorization": f"Bearer {jwt}"}
    rows: list[Row] = []
    with (
        upstream_process("echo") as upstream_url,
        tollgate_process(env, free_port()) as (base, pid),
    ):
        async with httpx.AsyncClient(base_url=base, timeout=60, headers=headers) as http:
            added = await http.post(
                "/api/v1/upstreams", json={"name": "echo", "url": upstream_url, "price": 1}
            )
            assert added.status_code == 201, added.text
            assert added.json()["state"] == "up", added.text
            enabled = (await http.post("/api/mcp/enable")).json()
        await fund(settings, enabled["account"]["id"])
        key = enabled["mcp_api_key"]
        modes = ["2026-07-28", "legacy"] if args.mode == "both" else [args.mode]
        for mode in modes:
            print(f"{backend}: tools/call echo, client mode {mode}, {args.calls} calls per run")
            for workers in args.concurrency:
                direct_runs, through_runs = [], []
                for _ in range(args.repeat):  # alternated: the machine's speed drifts
                    direct_runs.append(
                        await measure(upstream_url, mode, None, "echo", args.calls, workers)
                    )
                    through_runs.append(
                        await measure(
                            f"{base}/mcp", mode, key, "echo__echo", args.calls, workers, pid
                        )
                    )
                direct, through = medians(direct_runs), medians(through_runs)
                rows.append((backend, mode, workers, direct, through))
                print(f" concurrency {workers}")
                print(line("direct", direct))
                print(line("gateway", through))
                print(
                    f"  added p50 {through['p50'] - direct['p50']:+.2f} ms, p50 ratio "
                    f"{through['p50'] / direct['p50']:.2f}x, throughput ratio "
                    f"{through['rate'] / direct['rate']:.2f}"
                )
    if args.listing:
        await bench_listing(args, env, headers)
    return rows


async def bench_listing(
    args: argparse.Namespace, env: dict[str, str], headers: dict[str, str]
) -> None:
    from contextlib import ExitStack

    from tests.live import free_port

    with ExitStack() as stack:
        urls = [stack.enter_context(upstream_process(f"up{i}", extra_tools=45)) for i in range(10)]
        base, _ = stack.enter_context(tollgate_process(env, free_port()))
        async with httpx.AsyncClient(base_url=base, timeout=120, headers=headers) as http:
            await http.delete("/api/v1/upstreams/echo")
            for index, url in enumerate(urls):
                added = await http.post(
                    "/api/v1/upstreams", json={"name": f"up{index}", "url": url}
                )
                assert added.status_code == 201, added.text
            key = (await http.post("/api/mcp/regenerate-key")).json()["mcp_api_key"]
        mode = "2026-07-28" if args.mode == "both" else args.mode
        async with connect(f"{base}/mcp", mode, key) as client:
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
    parser.add_argument("--mode", default="both", choices=["2026-07-28", "legacy", "both"])
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")
    parser.add_argument("--all-backends", action="store_true")
    parser.add_argument(
        "--concurrency", type=lambda text: [int(n) for n in text.split(",")], default=[1, 10]
    )
    parser.add_argument("--no-listing", dest="listing", action="store_false")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of each measurement, direct and gateway alternated; medians are printed",
    )
    asyncio.run(run_all(parser.parse_args()))
