"""Messages per second on ``/mcp/ws`` (seed 002's protocol) for ``get`` and ``list``, on one
connection and on 20 connections.

Starts ``tollgate serve`` as a separate process on 127.0.0.1 with MCP enabled over the demo
helpdesk database (a fresh SQLite file in a temporary data directory; Tollgate's own database
is SQLite there too, or a scratch PostgreSQL database with --database-url). Each connection
sends its requests one after another, waiting for each reply.

Usage: python bench/ws_bench.py [--requests 1000] [--database-url URL] [--redis-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from scratch import scratch_database
from tollgate.core.crypto import generate_key_spec
from tollgate.data.demo import TICKETS, create_helpdesk
from tollgate.migrate import upgrade_to_head

TOLLGATE = str(Path(sys.executable).with_name("tollgate"))
START_SECONDS = 60.0
TOKEN = "bench-token-" + uuid.uuid4().hex
CONNECTIONS = (1, 20)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def tollgate_process(env: dict[str, str], port: int) -> Iterator[str]:
    """``tollgate serve`` in its own process; yields its base URL once healthy."""
    process = subprocess.Popen(
        [TOLLGATE, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError("tollgate exited during startup")
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


def request(action: str, n: int) -> str:
    """The ``n``-th request of a run: one ticket, or a page of 50 tickets."""
    if action == "get":
        return json.dumps(
            {"id": n, "action": "get", "model": "tickets", "params": {"id": n % TICKETS + 1}}
        )
    offset = (n * 50) % TICKETS
    return json.dumps(
        {"id": n, "action": "list", "model": "tickets", "params": {"limit": 50, "offset": offset}}
    )


async def measure(uri: str, action: str, total: int, connections: int) -> dict[str, float]:
    """Messages per second and p50 latency (ms) of ``total`` requests over ``connections``,
    timed once every connection is open and warmed up."""
    latencies: list[float] = []
    per_connection = total // connections
    warmed = asyncio.Barrier(connections + 1)

    async def worker(index: int) -> None:
        async with connect(uri, additional_headers={"X-MCP-Token": TOKEN}) as ws:
            await ws.send(request(action, index))
            await ws.recv()
            await warmed.wait()
            for n in range(per_connection):
                started = time.perf_counter()
                await ws.send(request(action, index * per_connection + n))
                reply = json.loads(await ws.recv())
                latencies.append((time.perf_counter() - started) * 1000)
                if reply["status"] != "ok":
                    raise RuntimeError(f"request failed: {reply}")

    workers = asyncio.gather(*(worker(i) for i in range(connections)))
    try:
        await asyncio.wait_for(warmed.wait(), START_SECONDS)
    except TimeoutError:
        workers.cancel()
        raise
    started = time.perf_counter()
    await workers
    elapsed = time.perf_counter() - started
    return {"rate": len(latencies) / elapsed, "p50": statistics.median(latencies)}


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with scratch_database(args.database_url, Path(tmp)) as url:
            await asyncio.to_thread(upgrade_to_head, url)
            create_helpdesk(Path(tmp) / "helpdesk.db")
            env = {
                **os.environ,
                "TOLLGATE_DATA_DIR": tmp,
                "DATABASE_URL": url,
                "REDIS_URL": args.redis_url or "",
                "TOLLGATE_CACHE_PREFIX": f"bench:{uuid.uuid4().hex}:",
                "JWT_SECRET_KEY": "bench-" + "x" * 40,
                "SECRET_KEY": "bench",
                "TOLLGATE_ENCRYPTION_KEYS": generate_key_spec(),
                "MCP_ENABLED": "true",
                "MCP_TOKEN": TOKEN,
                "MCP_RATE_LIMIT": "100000000",
                "LOG_LEVEL": "WARNING",
            }
            with tollgate_process(env, free_port()) as base:
                uri = base.replace("http://", "ws://", 1) + "/mcp/ws"
                print(f"/mcp/ws, {args.requests} requests per run (sequential per connection)")
                for action in ("get", "list"):
                    for connections in CONNECTIONS:
                        figures = await measure(uri, action, args.requests, connections)
                        plural = "s" if connections > 1 else " "
                        label = f"{action:<4} {connections:>2} connection{plural}"
                        print(
                            f"  {label}  {figures['rate']:9,.0f} messages/s   "
                            f"p50 {figures['p50']:6.2f} ms"
                        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")
    asyncio.run(run(parser.parse_args()))
