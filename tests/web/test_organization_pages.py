"""Organizations in real browsers: an owner creates one and invites a second user by email,
who accepts in their own browser and becomes a member; a pending invitation is cancelled;
a taken slug is refused next to the form."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.conftest import bearer, make_user, token_for
from tests.gateway.conftest import Gateway, http_to
from tests.web.browsing import screenshots, signed_in


async def test_an_invited_user_accepts_in_their_own_browser_and_joins_the_organization(
    browser: Browser, gateway: Gateway
) -> None:
    owner = await make_user(gateway.runtime)
    invitee = await make_user(gateway.runtime)
    bystander = await make_user(gateway.runtime)
    page = await signed_in(browser, gateway, owner.username)
    await page.get_by_role("link", name="Organizations").click()
    await expect(page.get_by_text("You belong to no organization yet")).to_be_visible()
    await screenshots(page, "organizations-empty")

    await page.get_by_label("Name", exact=True).fill("Acme Research")
    await page.get_by_label("Slug").fill("acme-research")
    await page.get_by_role("button", name="Create organization").click()
    await expect(page.get_by_role("heading", name="Acme Research")).to_be_visible()
    await page.get_by_label("Email").fill(invitee.email)
    await page.get_by_role("button", name="Invite", exact=True).click()
    await expect(page.locator("#pending")).to_contain_text(invitee.email)
    await page.get_by_label("Email").fill(bystander.email)
    await page.get_by_label("Role").select_option("admin")
    await page.get_by_role("button", name="Invite", exact=True).click()
    await expect(page.locator("#pending")).to_contain_text(bystander.email)
    await page.get_by_role("button", name=f"Cancel the invitation of {bystander.email}").click()
    await expect(page.get_by_text("Invitation cancelled.")).to_be_visible()
    await expect(page.locator("#pending")).not_to_contain_text(bystander.email)

    invited = await signed_in(browser, gateway, invitee.username)
    await invited.get_by_role("link", name="Organizations").click()
    await expect(invited.locator("#invited")).to_contain_text("Acme Research")
    await screenshots(invited, "organizations-invited")
    await invited.get_by_role("button", name="Accept the invitation to Acme Research").click()
    await expect(invited.get_by_text("You joined Acme Research.")).to_be_visible()
    await expect(invited.locator("#organizations")).to_contain_text("member")

    await (
        page.get_by_role("navigation", name="Main")
        .get_by_role("link", name="Organizations")
        .click()
    )
    await page.get_by_role("link", name="Acme Research").click()
    await expect(page.locator("#members")).to_contain_text(invitee.username)
    await expect(page.get_by_text("No pending invitations.")).to_be_visible()
    await screenshots(page, "organization")
    bystanders_view = await signed_in(browser, gateway, bystander.username)
    await bystanders_view.get_by_role("link", name="Organizations").click()
    await expect(bystanders_view.get_by_text("No invitations for you.")).to_be_visible()
    async with http_to(gateway) as http:
        joined = await http.get(
            "/api/v1/organizations", headers=bearer(token_for(gateway.runtime, invitee))
        )

    assert [(o["slug"], o["role"]) for o in joined.json()] == [("acme-research", "member")]


async def test_a_taken_slug_is_refused_next_to_the_form_and_nothing_is_created(
    browser: Browser, gateway: Gateway
) -> None:
    first, second = await make_user(gateway.runtime), await make_user(gateway.runtime)
    page = await signed_in(browser, gateway, first.username)
    await page.goto(f"{gateway.url}/ui/organizations")
    await page.get_by_label("Name", exact=True).fill("Taken")
    await page.get_by_label("Slug").fill("taken")
    await page.get_by_role("button", name="Create organization").click()
    await expect(page.get_by_role("heading", name="Taken")).to_be_visible()

    other = await signed_in(browser, gateway, second.username)
    await other.goto(f"{gateway.url}/ui/organizations")
    await other.get_by_label("Name", exact=True).fill("Mine")
    await other.get_by_label("Slug").fill("taken")
    await other.get_by_role("button", name="Create organization").click()
    create_card = other.locator("section", has=other.get_by_role("heading", name="Create"))
    await expect(create_card.get_by_role("alert")).to_contain_text(
        "An organization with this slug exists"
    )
    await screenshots(other, "organizations-refused")
    async with http_to(gateway) as http:
        theirs = await http.get(
            "/api/v1/organizations", headers=bearer(token_for(gateway.runtime, second))
        )

    assert theirs.json() == []
