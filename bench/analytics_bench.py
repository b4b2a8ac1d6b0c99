"""Analytics: batch ingestion rate, and dashboard and summary query times over 1,000,000
stored usage events.

Usage: python bench/analytics_bench.py [--events 1000000] [--store-events 200000]
       [--http-batches 10] [--days 3] [--repeat 3] [--database-url postgresql://...]

On a fresh SQLite file by default; with --database-url (a PostgreSQL server URL) a scratch
database is created there and dropped afterwards. Prints:
- ingestion through ``tollgate.analytics.service.store``: validated batches of 5,000 events,
  one transaction each (what ``POST /api/v1/analytics/batch`` costs without HTTP);
- ingestion through ``POST /api/v1/analytics/batch`` over ASGI for a smaller sample;
- the bulk fill up to ``--events`` (SQLAlchemy Core ``insert`` of plain rows);
- the dashboard and summary query times: median and best of ``--repeat`` runs through the
  service and through HTTP, and one run of the summary over 7 days (every event).
Timestamps are spread evenly over the last ``--days`` days, so the last day holds a third of
the events by default.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, text

from scratch import scratch_database
from tollgate.analytics import service
from tollgate.analytics.models import AnalyticsSession, CostTracking, ErrorLog, UsageEvent
from tollgate.analytics.schemas import BatchIn
from tollgate.app import create_app
from tollgate.core.crypto import generate_key_spec
from tollgate.core.database import transaction
from tollgate.core.runtime import Runtime
from tollgate.core.settings import Settings
from tollgate.identity.service import create_user, issue_access_token
from tollgate.migrate import upgrade_to_head

BATCH = 5000
"""Events per stored batch (the API's ``MAX_BATCH``): one transaction each."""

FILL_CHUNK = 20000
"""Rows per Core ``insert`` in the bulk fill."""

FILL_COMMIT_EVERY = 100_000
"""Rows per transaction in the bulk fill."""

TOOLS = [f"upstream{u}__tool{t}" for u in range(5) for t in range(8)]
SESSIONS = 1000
ERRORS = 10_000
COSTS = 10_000


class Generator:
    """Deterministic, plausible usage events spread over the last ``days`` days (cheap to
    make: a million of them should cost seconds, not minutes)."""

    def __init__(self, days: float, seed: int = 4) -> None:
        self.random = random.Random(seed)
        self.now = datetime.now(UTC)
        self.oldest = self.now - timedelta(days=days)
        self.span = days * 86400
        self.latencies = [round(self.random.lognormvariate(3, 0.8), 3) for _ in range(4096)]
        self.sessions = [f"session-{n}" for n in range(SESSIONS)]
        self.tools = [(tool, tool.split("__")[0]) for tool in TOOLS]

    def moment(self) -> datetime:
        return self.oldest + timedelta(seconds=self.random.random() * self.span)

    def event(self) -> dict[str, Any]:
        """An event as an MCP server posts it (seed 004's fields)."""
        r = self.random.random
        tool, upstream = self.tools[int(r() * len(self.tools))]
        ok = r() > 0.03
        return {
            "timestamp": self.oldest + timedelta(seconds=r() * self.span),
            "session_id": self.sessions[int(r() * SESSIONS)],
            "event_type": "tool_call",
            "tool_name": tool,
            "service": upstream,
            "response_time_ms": self.latencies[int(r() * 4096)],
            "success": ok,
            "error_message": None if ok else "tool_error",
            "metadata": {},
        }

    def row(self) -> dict[str, Any]:
        """An event as the recorder stores it (with credits)."""
        event = self.event()
        event["event_metadata"] = event.pop("metadata")
        event["credits"] = int(self.random.random() * 4)
        return event

    def json_event(self) -> dict[str, Any]:
        event = self.event()
        event["timestamp"] = event["timestamp"].isoformat()
        return event


def chunks(total: int, size: int) -> Iterator[int]:
    """Sizes of consecutive chunks adding up to ``total``."""
    while total > 0:
        yield min(size, total)
        total -= size


async def store_rate(runtime: Runtime, events: Generator, count: int) -> float:
    """Events per second through ``service.store`` (validation included)."""
    started = time.perf_counter()
    for size in chunks(count, BATCH):
        batch = BatchIn.model_validate({"events": [events.event() for _ in range(size)]})
        async with transaction(runtime.sessions) as session:
            stored = await service.store(session, batch)
        assert stored.events == size
    return count / (time.perf_counter() - started)


async def http_rate(http: httpx.AsyncClient, events: Generator, batches: int) -> float:
    """Events per second through ``POST /api/v1/analytics/batch`` (over ASGI)."""
    bodies = [{"events": [events.json_event() for _ in range(BATCH)]} for _ in range(batches)]
    started = time.perf_counter()
    for body in bodies:
        response = await http.post("/api/v1/analytics/batch", json=body)
        assert response.status_code == 201, response.text
    return batches * BATCH / (time.perf_counter() - started)


async def fill(runtime: Runtime, events: Generator, count: int) -> float:
    """Bulk-insert ``count`` events with Core inserts; rows per second."""
    started = time.perf_counter()
    for part in chunks(count, FILL_COMMIT_EVERY):
        async with transaction(runtime.sessions) as session:
            for size in chunks(part, FILL_CHUNK):
                await session.execute(insert(UsageEvent), [events.row() for _ in range(size)])
    return count / (time.perf_counter() - started) if count else 0.0


async def side_tables(runtime: Runtime, events: Generator) -> None:
    """Errors, costs and sessions for the summary and the dashboard to count."""
    rand = events.random
    async with transaction(runtime.sessions) as session:
        await session.execute(
            insert(ErrorLog),
            [
                {
                    "timestamp": events.moment(),
                    "error_type": rand.choice(("upstream_timeout", "upstream_unavailable")),
                    "error_message": "failed upstream",
                    "tool_name": rand.choice(TOOLS),
                    "resolved": rand.random() < 0.5,
                    "error_metadata": {},
                }
                for _ in range(ERRORS)
            ],
        )
        await session.execute(
            insert(CostTracking),
            [
                {
                    "timestamp": events.moment(),
                    "service_name": rand.choice(("langdb", "modal", "openai")),
                    "tokens_used": rand.randrange(100, 5000),
                    "cost_usd": round(rand.random() / 10, 6),
                    "cost_metadata": {},
                }
                for _ in range(COSTS)
            ],
        )
        await session.execute(
            insert(AnalyticsSession),
            [
                {
                    "session_id": f"session-{n}",
                    "started_at": events.now - timedelta(hours=2),
                    "last_activity_at": events.moment(),
                    "total_requests": 0,
                    "total_errors": 0,
                    "total_processing_ms": 0.0,
                    "session_metadata": {},
                }
                for n in range(SESSIONS)
            ],
        )


async def analyze(runtime: Runtime) -> None:
    """Refresh the planner's statistics after the bulk load (autovacuum would, later)."""
    async with runtime.engine.connect() as connection:
        await connection.execute(text("ANALYZE"))
        await connection.commit()


async def timed(action: Callable[[], Awaitable[Any]], repeat: int) -> tuple[float, float]:
    """Median and best wall time of ``repeat`` runs of ``action``, in milliseconds."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), min(times)


async def measure(url: str, folder: Path, args: argparse.Namespace) -> None:
    await asyncio.to_thread(upgrade_to_head, url)
    settings = Settings(
        data_dir=folder,
        database_url=url,
        cache_prefix=f"bench:{uuid.uuid4().hex}:",
        jwt_secret_key="bench-secret-" + "x" * 32,
        secret_key="bench-secret",
        encryption_keys=generate_key_spec(),
    )
    app = create_app(settings, configure_logs=False)
    async with app.router.lifespan_context(app):
        runtime: Runtime = app.state.runtime
        async with transaction(runtime.sessions) as session:
            admin = await create_user(
                session,
                username="bench-admin",
                email="bench-admin@example.com",
                password=None,
                role="admin",
            )
        headers = {"Authorization": f"Bearer {issue_access_token(settings, admin)}"}
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers=headers, timeout=600
        ) as http:
            await report(runtime, http, args)


async def report(runtime: Runtime, http: httpx.AsyncClient, args: argparse.Namespace) -> None:
    events = Generator(args.days)
    backend = runtime.engine.dialect.name
    print(f"analytics ({backend}, {args.events:,} events over {args.days:g} days)")

    store_count = min(args.store_events, args.events)
    rate = await store_rate(runtime, events, store_count)
    print(f"  service.store, {BATCH:,}/transaction: {rate:12,.0f} events/s ({store_count:,})")
    http_count = min(args.http_batches * BATCH, args.events - store_count)
    if http_count >= BATCH:
        rate = await http_rate(http, events, http_count // BATCH)
        print(f"  POST /batch of {BATCH:,} (ASGI):      {rate:12,.0f} events/s ({http_count:,})")
    else:
        http_count = 0
    remaining = args.events - store_count - http_count
    started = time.perf_counter()
    rate = await fill(runtime, events, remaining)
    await side_tables(runtime, events)
    await analyze(runtime)
    print(f"  bulk Core insert fill:            {rate:12,.0f} rows/s ({remaining:,})")
    print(f"  (fill, side tables and ANALYZE took {time.perf_counter() - started:.1f} s)")

    async def dashboard() -> None:
        async with runtime.sessions() as session:
            await service.dashboard(session)

    def summary(hours: int) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            async with runtime.sessions() as session:
                await service.summary(session, hours)

        return run

    def get(path: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            response = await http.get(f"/api/v1/analytics/{path}")
            assert response.status_code == 200, response.text

        return run

    async with runtime.sessions() as session:
        board = await service.dashboard(session)
    print(
        f"  dashboard sees: last 5 min {board['last_5_minutes']['calls']:,}, "
        f"last hour {board['last_hour']['calls']:,}, last day {board['last_day']['calls']:,} calls"
    )
    for label, action, runs in [
        ("dashboard (service)", dashboard, args.repeat),
        ("GET /dashboard", get("dashboard"), args.repeat),
        ("summary 24 h (service)", summary(24), args.repeat),
        ("GET /summary?hours=24", get("summary?hours=24"), args.repeat),
        ("summary 7 days (service)", summary(24 * 7), 1),
    ]:
        median, best = await timed(action, runs)
        plural = "s" if runs > 1 else ""
        print(f"  {label:<26} median {median:9.1f} ms   best {best:9.1f} ms   ({runs} run{plural})")


async def main(args: argparse.Namespace) -> None:
    """Print the figures for one database."""
    with tempfile.TemporaryDirectory() as tmp:
        async with scratch_database(args.database_url, Path(tmp)) as url:
            await measure(url, Path(tmp), args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--store-events", type=int, default=200_000)
    parser.add_argument("--http-batches", type=int, default=10)
    parser.add_argument("--days", type=float, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--database-url")
    asyncio.run(main(parser.parse_args()))
