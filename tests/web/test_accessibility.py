"""What every page owes a person who cannot use a mouse or does not get what they asked
for: the keyboard reaches each control with a visible focus, and a refusal is a page that
says why (never a JSON body or a trace)."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.conftest import make_user
from tests.gateway.conftest import Gateway
from tests.web.browsing import screenshots, signed_in

FOCUSABLE = "main a[href], main button, main select, main textarea, main input:not([type=hidden])"
"""The controls of a page's main content a keyboard must reach."""

FOCUSED = """() => {
  const element = document.activeElement;
  const style = getComputedStyle(element);
  return {
    id: [element.tagName, element.id, element.getAttribute("name"), element.getAttribute("value"),
      element.getAttribute("aria-label"), element.textContent.trim()].filter(Boolean).join(" "),
    visible: style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2,
    inMain: Boolean(element.closest("main")) && element.tagName !== "MAIN",
  };
}"""
"""Which element has the focus, and whether its focus ring shows."""


async def test_the_keyboard_reaches_every_control_with_a_visible_focus(
    browser: Browser, gateway: Gateway
) -> None:
    user = await make_user(gateway.runtime)
    page = await signed_in(browser, gateway, user.username)
    await page.goto(f"{gateway.url}/ui/tokens")
    await page.get_by_label("Name").fill("one")
    await page.get_by_role("button", name="Create token").click()
    await expect(page.locator("#tokens")).to_contain_text("one")
    controls = await page.locator(FOCUSABLE).count()

    await page.keyboard.press("Tab")
    skip = await page.evaluate(FOCUSED)
    await page.keyboard.press("Enter")
    await expect(page.locator("main")).to_be_focused()
    reached = []
    for _ in range(controls):
        await page.keyboard.press("Tab")
        reached.append(await page.evaluate(FOCUSED))

    assert skip == {"id": "A Skip to content", "visible": True, "inMain": False}
    assert [r for r in reached if not r["visible"] or not r["inMain"]] == []
    assert len({r["id"] for r in reached}) == controls  # each control once, in turn


async def test_a_refused_page_or_form_is_a_page_saying_why_not_json(
    browser: Browser, gateway: Gateway
) -> None:
    user = await make_user(gateway.runtime)
    page = await signed_in(browser, gateway, user.username)

    answer = await page.goto(f"{gateway.url}/ui/admin/users")
    await expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    await expect(page.get_by_role("alert")).to_contain_text("admin.users.read")
    await screenshots(page, "refused")
    await page.goto(f"{gateway.url}/ui/tokens")
    await page.get_by_label("Name").fill("forged")
    await page.locator("form[action='/ui/tokens'] input[name=csrf]").evaluate(
        "input => { input.value = 'not this browser' }"
    )
    await page.get_by_role("button", name="Create token").click()
    await expect(page.get_by_role("alert")).to_contain_text("The form expired")
    body = await page.locator("body").inner_text()

    assert answer is not None
    assert answer.status == 403
    assert answer.headers["content-type"].startswith("text/html")
    assert '"detail"' not in body
    assert "Traceback" not in body
