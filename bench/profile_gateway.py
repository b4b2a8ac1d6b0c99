"""Where the gateway's time goes on tools/call, per phase: ``tollgate serve`` sampled with
py-spy (every thread; it pauses the process briefly for each sample) while
bench/gateway_bench.py drives it at concurrency 1, then the busy samples grouped by the phase
of a call they were in.

Usage: python bench/profile_gateway.py [--calls 3000] [--mode 2026-07-28|legacy]
       [--database-url postgresql://...] [--redis-url redis://...] [--rate 250] [--top 15]
py-spy needs to attach to the process (root, or ptrace allowed). The shares are of the
samples in which the gateway was busy; idle waits (epoll, a thread waiting for work) are left
out. Read them as shares: sampling is statistical.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import gateway_bench

PHASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("record and charge (settler)", ("Settler.", "Gateway.settle", "CallMeter.", "SyncWrites.")),
    ("analytics", ("Recorder.", "Observers.emit", "publish_many")),
    ("upstream leg", ("ForwardPath._relay", "UpstreamLink.", "client_proto", "client_reqrep")),
    ("answer", ("_reply", "send_json", "EventStream.", "ForwardPath._finish")),
    ("metering", ("Gateway.rate_limited", "Gateway.reserve", "Gateway.connection_for")),
    ("key check", ("BearerGate._admit",)),
    ("request checks", ("CallerReader.", "tool_call", "read_body", "header_map")),
    ("forward path (own code)", ("ForwardPath.",)),
    ("HTTP server", ("httptools_impl", "uvicorn", "starlette", "fastapi", "bodylimit", "shortcut")),
)
"""A sample's phase is that of the innermost frame matching one of these markers."""

OTHER_THREADS = "other threads (SQLite writer, executors)"

IDLE = re.compile(r"Runner\.run \(|Condition\.wait|thread\.py:8\d\)|aiosqlite/core\.py:5\d")
"""Leaf frames of a thread with nothing to do."""


def phase_of(frames: list[str]) -> str:
    """The phase of a call a sampled stack belongs to."""
    for frame in reversed(frames):
        for phase, markers in PHASES:
            if any(marker in frame for marker in markers):
                return phase
    return "event loop and other"


def report(raw: Path, calls: int, top: int) -> None:
    """Busy samples by thread and by phase; the busiest functions of their own."""
    threads: Counter[str] = Counter()
    phases: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not frames or IDLE.search(frames[-1]):
            continue
        loop = any("Runner.run" in frame for frame in frames)
        threads["event loop" if loop else "other threads (SQLite writer, executors)"] += int(count)
        phases[phase_of(frames) if loop else "other threads (SQLite writer, executors)"] += int(
            count
        )
        leaves[re.sub(r" \(.*/(site-packages|src)/", " (", frames[-1])] += int(count)
    busy = sum(threads.values())
    print(f"\nbusy samples: {busy} over {calls} calls")
    for name, count in threads.most_common():
        print(f"  {name:<40} {100 * count / busy:5.1f}%")
    print("\nby phase of a call:")
    for name, count in phases.most_common():
        print(f"  {name:<40} {100 * count / busy:5.1f}%")
    print(f"\nbusiest functions (own time), top {top}:")
    for name, count in leaves.most_common(top):
        print(f"  {100 * count / busy:5.1f}%  {name[:110]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--mode", default="2026-07-28", choices=["2026-07-28", "legacy"])
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    args.all_backends, args.listing, args.concurrency, args.repeat = False, False, [1], 1
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        sys.exit("py-spy is not installed: make install")
    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "samples.txt"
        measure = gateway_bench.measure

        async def sampled(*given: Any, **options: Any) -> dict[str, float]:
            pid = given[6] if len(given) > 6 else options.get("pid", 0)
            if not pid:
                return await measure(*given, **options)
            command = [spy, "record", "-r", str(args.rate), "-f", "raw", "-o", str(raw)]
            recorder = subprocess.Popen(  # noqa: ASYNC220 - started once, not awaited
                [*command, "--pid", str(pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                return await measure(*given, **options)
            finally:
                recorder.send_signal(signal.SIGINT)  # py-spy writes what it sampled
                recorder.wait(timeout=30)

        gateway_bench.measure = sampled
        asyncio.run(gateway_bench.run_all(args))
        report(raw, args.calls, args.top)


if __name__ == "__main__":
    sys.path.insert(0, str(gateway_bench.ROOT))
    main()
