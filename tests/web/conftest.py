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


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium (``make browser`` installs it)."""
    if CHROMIUM is None:
        if REQUIRE_SERVICES:
            pytest.fail("chromium is required in this run: make browser")
        pytest.skip("needs chromium: make browser")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            await launched.close()
