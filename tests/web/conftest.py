"""Browser tests: Debian's Chromium, driven by Playwright, against a live Tollgate."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from tests.chat.conftest import llm
from tests.conftest import REQUIRE_SERVICES
from tests.gateway.conftest import gateway, gateway_settings, upstream
from tests.identity.oauth.conftest import oauth_gateway

__all__ = [
    "ARTEFACTS",
    "AXE",
    "browser",
    "gateway",
    "gateway_settings",
    "llm",
    "oauth_gateway",
    "upstream",
]

ARTEFACTS = Path(__file__).resolve().parents[1] / "artefacts" / "screenshots"
"""Where the browser tests leave screenshots of each page (1400 and 400 pixels wide)."""

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

AXE = Path(__file__).resolve().parents[1] / "npm" / "node_modules" / "axe-core" / "axe.min.js"
"""axe-core, the accessibility checker the browser tests inject into each page (``make
peers`` installs it from tests/npm)."""


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium (``make browser`` installs it), and axe-core to check each page."""
    if CHROMIUM is None:
        if REQUIRE_SERVICES:
            pytest.fail("chromium is required in this run: make browser")
        pytest.skip("needs chromium: make browser")
    if not AXE.is_file():
        if REQUIRE_SERVICES:
            pytest.fail("axe-core is required in this run: make peers")
        pytest.skip("needs axe-core: make peers")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            await launched.close()
