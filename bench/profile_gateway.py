"""Where the gateway's CPU goes on tools/call: ``tollgate serve`` under cProfile while
bench/gateway_bench.py drives it, then the time spent in each package and the costliest
functions.

Usage: python bench/profile_gateway.py [--calls 1000] [--mode 2026-07-28|legacy]
       [--database-url postgresql://...] [--redis-url redis://...] [--top 25]
cProfile sees the event loop's thread only (the aiosqlite thread's work is not in it) and
slows everything it sees down; read the shares, not the absolute times.
"""

from __future__ import annotations

import argparse
import asyncio
import pstats
import re
import shutil
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import gateway_bench

INSTALLED = re.compile(r"site-packages/([^/]+)")
STANDARD = re.compile(r"lib/python3\.\d+/([^/]+)")


def package_of(filename: str) -> str:
    """The package a profiled function belongs to (``tollgate``, ``sqlalchemy``, ``asyncio``...)."""
    if "/src/tollgate/" in filename:
        return "tollgate." + filename.split("/src/tollgate/")[1].split("/")[0].removesuffix(".py")
    found = INSTALLED.search(filename) or STANDARD.search(filename)
    if found:
        return found.group(1).removesuffix(".py")
    return "(built-in)" if filename.startswith("~") or filename.startswith("<") else filename


def report(profile: Path, calls: int, top: int) -> None:
    """Time per package, and the functions with the most time of their own."""
    stats = pstats.Stats(str(profile))
    by_package: dict[str, float] = defaultdict(float)
    total = 0.0
    for (filename, _, _), (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        by_package[package_of(filename)] += own
        total += own
    print(f"\nprofiled CPU (event loop thread): {total * 1000 / calls:.2f} ms per call")
    for name, seconds in sorted(by_package.items(), key=lambda item: -item[1])[:top]:
        print(f"  {name:<40} {100 * seconds / total:5.1f}%  {seconds * 1000 / calls:6.3f} ms/call")
    print()
    stats.sort_stats("tottime").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--mode", default="2026-07-28", choices=["2026-07-28", "legacy"])
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--save", type=Path, help="also keep the profile at this path")
    args = parser.parse_args()
    args.all_backends, args.listing, args.concurrency, args.repeat = False, False, [1], 1
    with tempfile.TemporaryDirectory() as folder:
        profile = Path(folder) / "tollgate.prof"
        profiled = str(Path(__file__).with_name("profiled.py"))
        gateway_bench.SERVE_PREFIX[:] = [sys.executable, profiled, str(profile)]
        asyncio.run(gateway_bench.run_all(args))
        # Both concurrencies' gateway calls, plus one warm-up call per client.
        report(profile, len(args.concurrency) * args.calls + sum(args.concurrency), args.top)
        if args.save:
            shutil.copyfile(profile, args.save)


if __name__ == "__main__":
    sys.path.insert(0, str(gateway_bench.ROOT))
    main()
