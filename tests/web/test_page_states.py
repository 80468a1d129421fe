"""The page's states that help: a token asked for (and a refused one replaced, and a
read-only one told apart), the API unreachable, a bad or unknown DAG name, a very long
one, and dark mode passing axe-core too. (Replaces the Node harness that drove the old
one-file page's token prompt.)"""

from __future__ import annotations

import re

import aiohttp
from playwright.async_api import Browser, Request, Route, expect

from tests.conftest import READ_TOKEN, WRITE_TOKEN
from tests.stack import Stack
from tests.web.conftest import Shot, new_context
from tests.web.pagekit import axe_violations, run_state

TEMPLATE = """
apiVersion: v1
dagName: web-template
params:
  - {name: model, enum: [als, bpr], description: which model}
  - {name: epochs, type: int, default: 3}
tasks:
  - {name: train, image: debian:12, command: ["/bin/echo", "{{ params.model }}", "{{ params.epochs }}"]}
"""


async def test_token_asked_for_refused_and_replaced(browser: Browser, web_stack: Stack, shot: Shot) -> None:
    context = await new_context(browser, web_stack, token=None)
    page = await context.new_page()
    sent: list[tuple[str, str | None]] = []

    def record(request: Request) -> None:
        if "/api/" in request.url:
            sent.append((request.url, request.headers.get("authorization")))

    page.on("request", record)
    try:
        await page.goto("/")  # the shell is public: it must load to ask for a token
        form = page.get_by_role("form", name="API token")
        await expect(form).to_contain_text("The API needs a token.")
        await expect(page.get_by_role("alert")).to_contain_text("An API token is needed")
        await expect(page.get_by_role("textbox", name="Token")).to_be_focused()
        assert await axe_violations(page) == []
        await shot(page, "token-needed")

        await page.get_by_role("textbox", name="Token").fill("not-a-configured-token-123")
        await page.get_by_role("button", name="Save token").click()
        await expect(form).to_contain_text("did not accept the stored token")
        # A refused token is forgotten, not sent again.
        assert await page.evaluate("localStorage.getItem('helios.token')") is None

        await page.get_by_role("textbox", name="Token").fill(WRITE_TOKEN)
        await page.get_by_role("button", name="Save token").click()
        await expect(form).to_have_count(0)
        await expect(page.get_by_role("heading", name="Runs")).to_be_visible()
        await expect(page.get_by_role("alert")).to_have_count(0)
        assert await page.evaluate("localStorage.getItem('helios.token')") == WRITE_TOKEN
        # Kept across a reload, and sent on every call from then on.
        await page.reload()
        await expect(page.get_by_role("heading", name="Runs")).to_be_visible()
        await expect(form).to_have_count(0)
        after = sent[[auth for _, auth in sent].index(f"Bearer {WRITE_TOKEN}"):]
        assert after and all(auth == f"Bearer {WRITE_TOKEN}" for _, auth in after), after

        # A read-only token may look but not submit: the form says why.
        await page.evaluate(f"localStorage.setItem('helios.token', {READ_TOKEN!r})")
        await page.goto("/submit")
        await page.get_by_role("button", name="Submit", exact=True).click()
        await expect(form).to_contain_text("lacks the scope")
        assert "/submit" in page.url
        await shot(page, "read-only-token")
    finally:
        await context.close()


async def test_unreachable_bad_names_long_names_and_dark_mode(browser: Browser, web_stack: Stack,
                                                              shot: Shot) -> None:
    context = await new_context(browser, web_stack, color_scheme="dark")
    page = await context.new_page()
    try:
        # Dark mode follows the system setting, with the same contrast checks.
        await page.goto("/")
        await expect(page.get_by_role("heading", name="Runs")).to_be_visible()
        # Keyboard: the first Tab offers to skip the navigation; taking it lands in the view.
        await page.keyboard.press("Tab")
        await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
        await page.keyboard.press("Enter")
        await page.keyboard.press("Tab")
        await expect(page.get_by_label("DAG name")).to_be_focused()
        assert await page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(17, 20, 24)"
        assert await axe_violations(page) == []
        await page.goto("/submit")
        await expect(page.locator("#dag-preview svg")).to_be_visible()
        assert await axe_violations(page) == []
        await shot(page, "submit-dark")

        # A DAG name that cannot exist, and one at the 63-character limit with no runs.
        await page.goto("/dags/Not_A_Label")
        await expect(page.get_by_role("alert")).to_contain_text("DNS-1123")
        long_name = "a" + "-long-dag-name" * 4 + "-" + "z" * 5
        long_name = long_name[:63]
        await page.goto(f"/dags/{long_name}")
        await expect(page.get_by_text(f"No runs of {long_name} yet.")).to_be_visible()
        assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        assert await axe_violations(page) == []
        await shot(page, "long-name-no-runs")

        # The API unreachable: the page says so and keeps trying.
        async def refuse(route: Route) -> None:
            await route.abort("connectionrefused")

        await page.route("**/api/v1/**", refuse)
        await page.goto("/")
        await expect(page.get_by_role("alert")).to_contain_text("The Helios API is unreachable")
        await shot(page, "api-unreachable")
        await page.unroute("**/api/v1/**", refuse)
        await page.get_by_role("button", name="Try again now").click()
        await expect(page.get_by_role("alert")).to_have_count(0)

        # A page path the app does not know (reached within the app).
        await page.evaluate("history.pushState(null, '', '/no/such/page');"
                            "dispatchEvent(new PopStateEvent('popstate'))")
        await expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
        # ... and typed by hand: the api answers the page itself, with a 404.
        response = await page.goto("/no/such/page")
        assert response is not None and response.status == 404
        await expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
        await expect(page.get_by_role("link", name="See all runs")).to_be_visible()
    finally:
        await context.close()


async def test_templates_listed_and_run_with_parameters(browser: Browser, web_stack: Stack, shot: Shot) -> None:
    headers = {"Authorization": f"Bearer {WRITE_TOKEN}", "Content-Type": "application/yaml"}
    async with aiohttp.ClientSession(headers=headers) as http, http.put(
            f"{web_stack.api_url}/api/v1/templates/train-web", data=TEMPLATE) as resp:
        assert resp.status in (200, 201), await resp.text()
    context = await new_context(browser, web_stack)
    page = await context.new_page()
    try:
        await page.goto("/templates")
        await page.get_by_role("button", name="Run train-web").click()
        form = page.get_by_role("form", name=re.compile("Run train-web"))
        await expect(form.get_by_label("model")).to_be_focused()
        await form.get_by_label("model").select_option("bpr")
        await form.get_by_label("epochs").fill("7")
        assert await axe_violations(page) == []
        await shot(page, "template-form")
        await form.get_by_role("button", name="Run", exact=True).click()
        await page.wait_for_url(re.compile(r"/runs/[0-9a-f]{32}$"))
        run = await run_state(web_stack.api_url, page.url.rsplit("/", 1)[1])
        assert run["status"] == "SUCCEEDED", run
        async with aiohttp.ClientSession(headers=headers) as http, http.get(
                f"{web_stack.api_url}/api/v1/dags/{run['dagId']}/tasks/train/logs") as resp:
            assert "bpr 7" in (await resp.json())["lines"], await resp.text()
    finally:
        await context.close()
