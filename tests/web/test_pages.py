"""The pages in a real browser: sign in, enable the MCP account and copy the key, see a tool
call in the usage and on the live dashboard, add an upstream as admin, chat with a tool call
in the playground, disconnect an OAuth client; screenshots of each page at 1400 and 400
pixels wide."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.chat.helpers import configure
from tests.chat.scripted import ScriptedLLM
from tests.conftest import make_user, token_for
from tests.gateway.conftest import Gateway, Upstream, http_to, mcp_client_at, new_member, text_of
from tests.identity.oauth.conftest import connected
from tests.web.browsing import WIDTHS, screenshots, signed_in
from tollgate.identity.models import Role


async def test_a_user_enables_the_account_copies_the_key_and_sees_the_call_in_usage(
    browser: Browser, gateway: Gateway, upstream: Upstream
) -> None:
    admin = await make_user(gateway.runtime, role=Role.ADMIN, is_superuser=True)
    page = await signed_in(browser, gateway, admin.username)
    await screenshots(page, "portal-empty")

    await page.get_by_role("button", name="Enable my MCP account").click()
    key = (await page.locator("#new-key").text_content() or "").strip()
    await page.get_by_role("button", name="Copy").click()
    await expect(page.get_by_text("Copied")).to_be_visible()
    copied = await page.evaluate("navigator.clipboard.readText()")
    await screenshots(page, "portal-key")

    await page.goto(f"{gateway.url}/ui/admin/upstreams")
    await page.get_by_label("Name").fill("echo")
    await page.get_by_label("Streamable HTTP URL").fill(upstream.url)
    await page.get_by_role("button", name="Add").click()
    await expect(page.locator("#upstreams")).to_contain_text("echo")
    await expect(page.locator("#upstreams")).to_contain_text("up")
    await screenshots(page, "upstreams")

    await page.goto(f"{gateway.url}/ui/admin/dashboard")
    calls_today = page.locator('[data-window="last_day"]')
    await expect(calls_today).to_have_text("0")
    async with mcp_client_at(gateway.mcp_url, copied) as client:
        answer = await client.call_tool("echo__echo", {"text": "from the browser test"})
    await expect(calls_today).to_have_text("1", timeout=15_000)  # no reload: the live panel
    await expect(page.locator("#top-tools")).to_contain_text("echo__echo")
    await screenshots(page, "dashboard")

    await page.goto(f"{gateway.url}/ui/")
    await expect(page.locator("#usage")).to_contain_text("echo__echo")
    await screenshots(page, "portal-usage")

    assert key.startswith("mcp_")
    assert copied == key
    assert text_of(answer) == "from the browser test"


async def test_a_wrong_password_is_refused_on_the_page_and_pages_need_a_session(
    browser: Browser, gateway: Gateway
) -> None:
    user = await make_user(gateway.runtime)
    page = await (await browser.new_context()).new_page()

    await page.goto(f"{gateway.url}/ui/admin/upstreams")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.get_by_label("Username or email").fill(user.username)
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_be_visible()
    await screenshots(page, "login-refused")


async def test_the_playground_shows_a_tool_call_and_a_connected_client_is_revoked(
    browser: Browser,
    oauth_gateway: Gateway,
    upstream: Upstream,
    llm: tuple[ScriptedLLM, str],
) -> None:
    gateway = oauth_gateway
    scripted, llm_url = llm
    await configure(gateway, upstream.url, llm_url, "openai")
    member = await new_member(gateway)
    async with http_to(gateway) as http:
        _, tokens = await connected(gateway, member, http)
    scripted.say(tool="echo__echo", arguments={"text": "from the playground"})
    scripted.say("All done.")
    page = await signed_in(browser, gateway, member.email)

    await expect(page.locator("#grants")).to_contain_text("Test client")
    await page.get_by_role("button", name="Disconnect Test client").click()
    await expect(page.get_by_text("The client was disconnected.")).to_be_visible()
    await screenshots(page, "portal-clients")
    async with http_to(gateway) as http:
        refused = await http.post(
            "/mcp", json={}, headers={"Authorization": f"Bearer {tokens.access}"}
        )

    await page.get_by_role("link", name="Chat").click()
    await page.get_by_role("button", name="Connect").click()
    await expect(page.locator("#connected")).to_contain_text("m1")
    await page.get_by_label("Message").fill("Echo something")
    await page.get_by_role("button", name="Send").click()
    transcript = page.locator("#transcript")
    await expect(transcript).to_contain_text("Calling echo__echo")
    await expect(transcript).to_contain_text("echo__echo → from the playground")
    await expect(transcript).to_contain_text("All done.")
    await screenshots(page, "chat")

    assert refused.status_code == 401


async def test_an_admin_adds_a_virtual_server_and_an_llm_model_on_the_pages(
    browser: Browser, gateway: Gateway, upstream: Upstream
) -> None:
    admin = await make_user(gateway.runtime, role=Role.ADMIN, is_superuser=True)
    page = await signed_in(browser, gateway, admin.username)
    await page.goto(f"{gateway.url}/ui/admin/upstreams")
    await page.get_by_label("Name").fill("echo")
    await page.get_by_label("Streamable HTTP URL").fill(upstream.url)
    await page.get_by_role("button", name="Add").click()
    await expect(page.locator("#upstreams")).to_contain_text("echo")

    await page.get_by_role("link", name="Virtual servers").click()
    await page.get_by_label("Name (its path").fill("curated")
    await page.get_by_label("Tools, one per line").fill("echo__echo\necho__add")
    await page.get_by_role("button", name="Add server").click()
    await expect(page.locator("#servers")).to_contain_text("/servers/curated/mcp")
    await expect(page.locator("#servers")).to_contain_text("echo__add")
    await screenshots(page, "servers")

    await page.get_by_role("link", name="LLM models").click()
    await page.locator("#provider-name").fill("local")
    await page.locator("#provider-url").fill("http://127.0.0.1:9/v1")
    await page.locator("#provider-key").fill("sk-page-secret")
    await page.get_by_role("button", name="Add provider").click()
    await expect(page.locator("#providers")).to_contain_text("********")
    await page.locator("#model-id").fill("demo")
    await page.get_by_role("button", name="Add model").click()
    await expect(page.locator("#models")).to_contain_text("demo")
    await screenshots(page, "llm")

    assert "sk-page-secret" not in await page.content()


async def test_the_api_docs_render_offline_and_authorize_works(
    browser: Browser, gateway: Gateway
) -> None:
    user = await make_user(gateway.runtime)
    jwt = token_for(gateway.runtime, user)
    context = await browser.new_context(viewport={"width": WIDTHS[0], "height": 900})
    outside: list[str] = []
    context.on(
        "requestfinished",
        lambda request: (
            outside.append(request.url)
            if request.url.startswith("http") and not request.url.startswith(gateway.url)
            else None
        ),
    )
    page = await context.new_page()

    await page.goto(f"{gateway.url}/api/v1/docs")
    await page.get_by_role("button", name="Authorize").first.click()
    await page.locator(".modal-ux input").first.fill(jwt)
    await page.locator(".modal-ux button.authorize").click()  # named "Apply credentials"
    await page.locator(".modal-ux button.btn-done").click()
    operation = page.locator("#operations-admin_users-read_me_api_v1_admin_users_me_get")
    await operation.locator(".opblock-summary").click()
    await operation.get_by_role("button", name="Try it out").click()
    await operation.get_by_role("button", name="Execute").click()
    live = operation.locator(".live-responses-table")
    await expect(live.locator(".response .response-col_status").first).to_contain_text("200")
    await expect(operation.locator(".live-responses-table")).to_contain_text(user.username)
    await screenshots(page, "api-docs", ours=False)  # Swagger UI's own markup

    await page.goto(f"{gateway.url}/api/v1/redoc")
    await expect(
        page.get_by_text("Self-hosted MCP gateway and control plane.").first
    ).to_be_visible()

    assert outside == []
