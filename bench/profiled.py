"""Run a Python script under cProfile and write the profile when it is stopped with SIGTERM.

Usage: python bench/profiled.py OUT.prof SCRIPT [ARGS...]
``python -m cProfile`` writes nothing for uvicorn: uvicorn re-raises the SIGTERM it caught
once it has shut down, which ends the process before the profile is written. A handler
installed first is the one uvicorn restores and re-raises to, so it writes the profile.
"""

from __future__ import annotations

import cProfile
import runpy
import signal
import sys
from types import FrameType


def main() -> None:
    """Profile SCRIPT until it ends or is terminated."""
    output, script, *arguments = sys.argv[1:]
    profile = cProfile.Profile()

    def write_and_exit(signum: int, frame: FrameType | None) -> None:
        profile.disable()
        profile.dump_stats(output)
        sys.exit(0)

    signal.signal(signal.SIGTERM, write_and_exit)
    sys.argv = [script, *arguments]
    profile.enable()
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        profile.disable()
        profile.dump_stats(output)


if __name__ == "__main__":
    main()
