"""The user portal's credentials pages in a real browser: a personal integration added
(its secret never shown again), edited, disabled and deleted; an access token created,
copied, used against the API and refused once revoked."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.conftest import bearer, make_user, token_for
from tests.gateway.conftest import Gateway, http_to
from tests.web.browsing import screenshots, signed_in

SECRET = "ghp_typed_in_the_browser_0123456789"


async def test_a_personal_integration_is_added_masked_edited_disabled_and_deleted(
    browser: Browser, gateway: Gateway
) -> None:
    user = await make_user(gateway.runtime)
    jwt = bearer(token_for(gateway.runtime, user))
    page = await signed_in(browser, gateway, user.username)
    await page.get_by_role("link", name="Integrations").click()
    await expect(page.get_by_text("No integrations yet — add one below")).to_be_visible()
    await screenshots(page, "integrations-empty")

    await page.get_by_label("Service").select_option("github")
    await page.get_by_role("button", name="Show its fields").click()
    await page.get_by_label("Name (optional)").fill("my github")
    await page.get_by_label("Access token (secret)").fill(SECRET)
    await page.get_by_role("button", name="Add GitHub").click()
    listed = page.locator("#integrations")
    await expect(listed).to_contain_text("my github")
    await expect(listed).to_contain_text("access_token: ********")
    shown_after_adding = await page.content()
    await screenshots(page, "integrations")
    async with http_to(gateway) as http:
        leased = await http.post(
            "/api/mcp/credentials/lease", json={"services": ["github"]}, headers=jwt
        )

    await page.get_by_role("link", name="Edit my github").click()
    secret_box = page.get_by_label("Access token (secret)")
    await expect(secret_box).to_have_value("")
    await expect(secret_box).to_have_attribute("placeholder", "******** stored: type to replace")
    shown_when_editing = await page.content()
    await screenshots(page, "integration-edit")
    await page.get_by_label("Name", exact=True).fill("work github")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_text("Saved work github.")).to_be_visible()
    async with http_to(gateway) as http:
        kept = await http.post(
            "/api/mcp/credentials/lease", json={"services": ["github"]}, headers=jwt
        )

    await page.get_by_role("button", name="Disable work github").click()
    await expect(listed).to_contain_text("disabled")
    async with http_to(gateway) as http:
        lease_after = await http.get(
            f"/api/mcp/credentials/lease/{kept.json()['lease_id']}", headers=jwt
        )
    await page.get_by_role("button", name="Delete work github").click()
    await expect(page.get_by_text("Deleted work github.")).to_be_visible()
    await expect(page.get_by_text("No integrations yet — add one below")).to_be_visible()

    assert SECRET not in shown_after_adding
    assert SECRET not in shown_when_editing
    assert leased.json()["credentials"]["github"]["access_token"] == SECRET
    assert kept.json()["credentials"]["github"]["access_token"] == SECRET  # empty: kept
    assert lease_after.json()["status"] == "revoked"


async def test_an_access_token_is_created_copied_used_and_refused_once_revoked(
    browser: Browser, gateway: Gateway
) -> None:
    user = await make_user(gateway.runtime)
    page = await signed_in(browser, gateway, user.username)
    await page.get_by_role("link", name="Access tokens").click()
    await expect(page.get_by_text("No access tokens yet — create one below")).to_be_visible()

    await page.get_by_label("Name").fill("ci-server")
    await page.get_by_label("read").check()
    await page.get_by_label("Expires after").select_option(label="30 days")
    await page.get_by_role("button", name="Create token").click()
    shown = (await page.locator("#new-token").text_content() or "").strip()
    await page.get_by_role("button", name="Copy").click()
    await expect(page.get_by_text("Copied")).to_be_visible()
    copied = await page.evaluate("navigator.clipboard.readText()")
    await expect(page.locator("#tokens")).to_contain_text(shown[:12])
    await screenshots(page, "tokens")
    async with http_to(gateway) as http:
        accepted = await http.get("/api/mcp/me", headers=bearer(copied))

    await page.get_by_role("button", name="Revoke ci-server").click()
    await expect(page.locator("#tokens")).to_contain_text("revoked")
    await page.goto(f"{gateway.url}/ui/tokens")
    await expect(page.locator("#tokens")).to_contain_text("ci-server")
    await expect(page.locator("#new-token")).to_have_count(0)  # shown that once only
    async with http_to(gateway) as http:
        refused = await http.get("/api/mcp/me", headers=bearer(copied))

    assert shown.startswith("mcpt_")
    assert copied == shown
    assert accepted.status_code == 200
    assert accepted.json()["email"] == user.email
    assert refused.status_code == 401
