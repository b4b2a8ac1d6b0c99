"""The admin console in a real browser: users and roles, an account's credits and ledger,
and the audit log."""

from __future__ import annotations

import httpx
from playwright.async_api import Browser, expect

from tests.conftest import PASSWORD, bearer, make_user
from tests.gateway.conftest import Gateway, http_to, new_member
from tests.web.browsing import screenshots, signed_in
from tollgate.identity.models import Role


async def _sign_in_by_api(http: httpx.AsyncClient, username: str) -> httpx.Response:
    return await http.post("/api/v1/auth/login", data={"username": username, "password": PASSWORD})


async def test_an_admin_creates_a_user_changes_its_role_and_deactivates_it(
    browser: Browser, gateway: Gateway
) -> None:
    admin = await make_user(gateway.runtime, role=Role.ADMIN, is_superuser=True)
    page = await signed_in(browser, gateway, admin.username)
    await page.get_by_role("link", name="Users").click()
    await page.get_by_label("Username").fill("pat-from-the-page")
    await page.get_by_label("Email").fill("pat@example.com")
    await page.get_by_label("First password").fill(PASSWORD)
    await page.get_by_role("button", name="Create user").click()
    await expect(page.get_by_text("Created pat-from-the-page.")).to_be_visible()
    async with http_to(gateway) as http:
        signed = (await _sign_in_by_api(http, "pat-from-the-page")).json()["access_token"]
        as_user = await http.get("/api/v1/admin/users", headers=bearer(signed))

    await page.get_by_label("Role of pat-from-the-page", exact=True).select_option("admin")
    await page.get_by_role("button", name="Set role of pat-from-the-page").click()
    await expect(page.get_by_text("pat-from-the-page is now an admin, active.")).to_be_visible()
    async with http_to(gateway) as http:
        as_admin = await http.get("/api/v1/admin/users", headers=bearer(signed))

    await page.get_by_role("button", name="Deactivate pat-from-the-page").click()
    await expect(page.get_by_text("pat-from-the-page is now an admin, deactivated")).to_be_visible()
    await screenshots(page, "users")
    async with http_to(gateway) as http:
        after = await http.get("/api/v1/admin/users", headers=bearer(signed))
        signing_in_again = await _sign_in_by_api(http, "pat-from-the-page")

    await page.get_by_role("button", name=f"Deactivate {admin.username}").click()
    own_row = page.locator(f"#user-{admin.id}")
    await expect(own_row.get_by_role("alert")).to_have_text(
        "You cannot demote or deactivate yourself"
    )
    await screenshots(page, "users-refused")

    assert as_user.status_code == 403
    assert as_admin.status_code == 200
    assert after.status_code == 401
    assert signing_in_again.status_code == 401


async def test_credits_granted_with_a_reason_land_in_the_ledger_and_actions_in_the_audit_log(
    browser: Browser, gateway: Gateway
) -> None:
    admin = await make_user(gateway.runtime, role=Role.ADMIN, is_superuser=True)
    member = await new_member(gateway)
    async with http_to(gateway) as http:
        before = (await http.get("/api/mcp/account", headers=member.jwt_headers)).json()
    page = await signed_in(browser, gateway, admin.username)
    await page.get_by_role("link", name="Accounts").click()
    await page.get_by_label("Owner's email contains").fill(member.email.split("@")[0])
    await page.get_by_role("button", name="Find").click()
    await screenshots(page, "accounts")
    await page.get_by_role("link", name=member.email).click()
    await page.get_by_role("spinbutton", name="Credits").fill("25")
    await page.get_by_label("Reason").fill("Conference voucher")
    await page.get_by_role("button", name="Grant").click()
    expected = before["credits_balance"] + 25
    await expect(page.get_by_text(f"the balance is {expected}")).to_be_visible()
    ledger_top = page.locator("#ledger tbody tr").first
    await expect(ledger_top).to_contain_text("Conference voucher")
    await expect(ledger_top).to_contain_text("+25")
    await expect(ledger_top).to_contain_text(admin.email)
    await screenshots(page, "account")
    async with http_to(gateway) as http:
        after = (await http.get("/api/mcp/account", headers=member.jwt_headers)).json()

    await (
        page.get_by_role("navigation", name="Main")
        .get_by_role("link", name="Access tokens")
        .click()
    )
    await page.get_by_label("Name").fill("audited-token")
    await page.get_by_role("button", name="Create token").click()
    await page.get_by_role("link", name="Audit log").click()
    await page.get_by_label("Action").fill("token_created")
    await page.get_by_label("Actor user id").fill(str(admin.id))
    await page.get_by_role("button", name="Filter").click()
    entries = page.locator("#audit tbody tr")
    await expect(entries).to_have_count(1)
    await expect(entries.first).to_contain_text("audited-token")
    await expect(entries.first).to_contain_text(f"user {admin.id}")
    await screenshots(page, "audit")
    await page.get_by_label("From (day, UTC)").fill("2001-01-01")
    await page.get_by_label("To (day, UTC)").fill("2001-01-02")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.get_by_text("No entries match this filter.")).to_be_visible()

    assert after["credits_balance"] == expected
