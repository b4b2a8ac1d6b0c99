"""What the browser tests do on every page: sign in, take screenshots at 1400 and 400 px
(with no horizontal overflow), and check the page with axe-core (no serious or critical
violation)."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Browser, Dialog, Error, Page, expect

from tests.conftest import PASSWORD
from tests.gateway.conftest import Gateway
from tests.web.conftest import ARTEFACTS, AXE

WIDTHS = (1400, 400)
"""A desktop window and a narrow phone."""

SETTLE_MS = 5_000
"""How long a page may take to fit a new width (charts redraw after a resize)."""

BLOCKING_IMPACTS = frozenset({"serious", "critical"})
"""axe-core violations that fail a test; minor and moderate ones are left to review."""


async def browser_page(browser: Browser, gateway: Gateway) -> Page:
    """A page in a browser context of its own (a person of their own), that accepts the
    confirmations forms ask for and may use the clipboard."""
    context = await browser.new_context(viewport={"width": WIDTHS[0], "height": 900})
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gateway.url)
    page = await context.new_page()
    page.on("dialog", _accept)
    return page


async def _accept(dialog: Dialog) -> None:
    await dialog.accept()


async def signed_in(browser: Browser, gateway: Gateway, username: str) -> Page:
    """A page whose browser signed in as ``username``."""
    page = await browser_page(browser, gateway)
    await page.goto(f"{gateway.url}/")
    await page.get_by_label("Username or email").fill(username)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="My MCP account")).to_be_visible()
    return page


async def screenshots(page: Page, name: str, *, ours: bool = True) -> None:
    """The page at each width, under tests/artefacts/screenshots, each checked for
    horizontal overflow and (``ours``: not a third party's page, such as Swagger UI) by
    axe-core."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    for width in WIDTHS:
        await page.set_viewport_size({"width": width, "height": 900})
        await fits_its_width(page, f"{name} at {width} px")
        await page.screenshot(path=str(ARTEFACTS / f"{name}-{width}.png"), full_page=True)
        if ours:
            await accessible(page, f"{name} at {width} px")
    await page.set_viewport_size({"width": WIDTHS[0], "height": 900})


async def fits_its_width(page: Page, what: str) -> None:
    """Wait (bounded) until the page is no wider than the window; fail if it stays wider."""
    try:
        await page.wait_for_function(
            "document.documentElement.scrollWidth <= window.innerWidth", timeout=SETTLE_MS
        )
    except Error:
        overflow = await page.evaluate("document.documentElement.scrollWidth - innerWidth")
        raise AssertionError(f"{what} is {overflow} px wider than the window") from None


async def accessible(page: Page, what: str) -> None:
    """Run axe-core on the page; fail on any serious or critical violation."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.add_script_tag(path=str(AXE))
    found: dict[str, Any] = await page.evaluate(
        "axe.run(document, { resultTypes: ['violations'] })"
    )
    blocking = [v for v in found["violations"] if v["impact"] in BLOCKING_IMPACTS]
    assert not blocking, f"{what} has accessibility violations:\n" + "\n".join(
        _described(v) for v in blocking
    )


def _described(violation: dict[str, Any]) -> str:
    places = ", ".join(" ".join(node["target"]) for node in violation["nodes"][:5])
    return f"- {violation['id']} ({violation['impact']}): {violation['help']} at {places}"
