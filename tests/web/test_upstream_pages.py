"""The upstreams page in a real browser: an upstream's health and tools, a price of its own
for one tool and a deny list (which the gateway then applies), a refresh, and a refused
change shown next to its form."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.gateway.conftest import (
    Gateway,
    Upstream,
    connect,
    http_to,
    new_member,
    register_upstream,
    tool_names,
)
from tests.web.browsing import screenshots, signed_in
from tollgate.identity.models import Role


async def test_the_upstreams_page_shows_tools_changes_a_price_and_a_deny_list_and_refreshes(
    browser: Browser, gateway: Gateway, upstream: Upstream
) -> None:
    admin = await new_member(gateway, role=Role.ADMIN)
    member = await new_member(gateway)
    await register_upstream(gateway, admin, name="echo", url=upstream.url, price=2)
    page = await signed_in(browser, gateway, admin.email)
    await page.get_by_role("link", name="Upstreams").click()
    card = page.locator("#upstream-echo")
    await expect(card).to_contain_text("up")
    await expect(card.get_by_text("echo__add", exact=True)).to_be_visible()

    await card.get_by_text("Prices and lists of echo").click()
    await card.get_by_label("Own prices of some tools").fill("echo = 5")
    await card.get_by_label("Deny list").fill("add")
    await card.get_by_role("button", name="Save echo").click()
    await expect(card.get_by_role("status")).to_have_text("Saved echo.")
    echo_row = card.locator("tr", has_text="echo__echo")
    await expect(echo_row).to_contain_text("5")
    await expect(echo_row).to_contain_text("(own price)")
    await expect(card.get_by_text("echo__add", exact=True)).to_have_count(0)
    async with connect(gateway, member.key) as client:
        offered = await tool_names(client)
    async with http_to(gateway) as http:
        stored = (await http.get("/api/v1/upstreams/echo", headers=admin.jwt_headers)).json()

    await card.get_by_role("button", name="Refresh echo").click()
    await expect(card.get_by_role("status")).to_contain_text("Refreshed echo:")
    await screenshots(page, "upstreams-policy")

    await card.get_by_text("Prices and lists of echo").click()
    await card.get_by_label("Own prices of some tools").fill("echo is five")
    await card.get_by_role("button", name="Save echo").click()
    await expect(card.get_by_role("alert")).to_contain_text("name = value")

    assert "echo__echo" in offered
    assert "echo__add" not in offered
    assert stored["tool_prices"] == {"echo": 5}
    assert stored["tools_denied"] == ["add"]
    assert stored["price"] == 2
