"""The admin dashboard in a real browser: its live panel follows the live feed second by second
(calls, errors, latency, credits) without a reload, drawn with Chart.js and, when Chart.js is
missing, as text only; the ticket that opens the feed is given to analytics readers only."""

from __future__ import annotations

import re

from playwright.async_api import Browser, Page, Route, expect

from tests.conftest import make_user
from tests.gateway.conftest import (
    Gateway,
    Upstream,
    add_upstream,
    balance,
    mcp_client_at,
    new_member,
    quick_member,
    text_of,
    wait_settled,
)
from tests.web.browsing import screenshots, signed_in
from tollgate.identity.models import Role

LIVE_DEADLINE_MS = 15_000
"""A call reaches the panel within a second or two; the spoken summary within ten more."""

LIVE = "Live: updated every second."
"""What the panel says once its socket is subscribed."""


async def _refuse(route: Route) -> None:
    await route.abort()


async def dashboard(page: Page, gateway: Gateway) -> Page:
    """``page`` on the dashboard, once its live panel is connected."""
    await page.goto(f"{gateway.url}/ui/admin/dashboard")
    await expect(page.locator("#feed-state")).to_have_text(LIVE, timeout=LIVE_DEADLINE_MS)
    return page


async def test_the_live_panel_shows_calls_errors_and_credits_as_they_happen_without_a_reload(
    browser: Browser, gateway: Gateway, upstream: Upstream
) -> None:
    admin = await new_member(gateway, role=Role.ADMIN)
    await add_upstream(gateway, admin, name="echo", url=upstream.url, price=2)
    caller = await quick_member(gateway, credits=100)
    charted = await dashboard(await signed_in(browser, gateway, admin.email), gateway)
    text_only = await signed_in(browser, gateway, admin.email)
    await text_only.context.route("**/static/vendor/chart.umd.min.js", _refuse)
    await dashboard(text_only, gateway)

    async with mcp_client_at(gateway.mcp_url, caller.key) as client:
        answers = [await client.call_tool("echo__echo", {"text": f"call {n}"}) for n in range(3)]
        failed = await client.call_tool("echo__fail", {})
    await wait_settled(gateway.runtime, caller.account_id)
    spent = 100 - await balance(gateway.runtime, caller.account_id)

    for page in (charted, text_only):  # no reload: the socket brings them
        await expect(page.locator("#feed-calls")).to_have_text("4", timeout=LIVE_DEADLINE_MS)
        await expect(page.locator("#feed-errors")).to_have_text("1")
        await expect(page.locator("#feed-credits")).to_have_text(str(spent))
        await expect(page.locator("#feed-latency")).to_contain_text(" ms")
        await expect(page.locator("#feed-summary")).to_contain_text(
            f"Last minute: 4 calls, 1 error, {spent} credits", timeout=LIVE_DEADLINE_MS
        )
    chart = charted.locator("#feed-chart")
    await expect(chart).to_be_visible()
    await expect(chart).to_have_attribute("data-calls", re.compile(r"(^|,)[1-9]"))
    drawn = await charted.evaluate(
        "Math.max(...Chart.getChart(document.getElementById('feed-chart')).data.datasets[0].data)"
    )
    await expect(text_only.locator("#feed-chart-box")).to_be_hidden()
    await expect(charted.locator('[data-window="last_day"]')).to_have_text("4")
    await expect(charted.locator("#top-tools")).to_contain_text(re.compile(r"echo__echo\W+3 calls"))
    await expect(charted.locator("#top-tools")).to_contain_text(re.compile(r"echo__fail\W+1 call$"))
    await screenshots(charted, "dashboard-live")
    await screenshots(text_only, "dashboard-live-text-only")

    assert [text_of(a) for a in answers] == ["call 0", "call 1", "call 2"]
    assert failed.is_error
    assert drawn >= 1
    assert spent >= 6  # three echoes at 2 credits, and the failed call as the gateway charges it


async def test_only_an_analytics_reader_gets_a_ticket_for_the_live_feed(
    browser: Browser, gateway: Gateway
) -> None:
    admin = await make_user(gateway.runtime, role=Role.ADMIN, is_superuser=True)
    user = await make_user(gateway.runtime)
    admin_page = await signed_in(browser, gateway, admin.username)
    user_page = await signed_in(browser, gateway, user.username)
    ticket_url = f"{gateway.url}/ui/admin/dashboard/live-ticket"

    given = await admin_page.request.get(ticket_url)
    refused = await user_page.request.get(ticket_url)
    signed_out = await (await browser.new_context()).request.get(ticket_url, max_redirects=0)

    assert given.status == 200
    assert given.headers["cache-control"] == "no-store"
    assert set(await given.json()) == {"ticket", "expires_in"}
    assert refused.status == 403
    assert signed_out.status == 303
