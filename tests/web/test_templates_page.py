"""The Templates page shows each stored DAG's schedule (the API's next fire times, its
state), pauses it from a button, refuses a read-only token the page's usual way, and links
to the stored DAG's runs."""

from __future__ import annotations

from typing import Any

import aiohttp
from playwright.async_api import Browser, expect

from tests.conftest import READ_TOKEN, WRITE_TOKEN
from tests.stack import Stack
from tests.web.conftest import Shot, new_context
from tests.web.pagekit import axe_violations

TEMPLATE = """
apiVersion: v1
dagName: web-scheduled
tasks:
  - {name: hello, image: debian:12, command: ["/bin/true"]}
"""
# Once a year, far from now: the firing loop of the shared stack never starts a run of it.
SCHEDULE = {"cron": "0 3 1 1 *", "timezone": "Europe/Berlin", "concurrencyPolicy": "Forbid"}


async def test_schedule_shown_paused_from_the_page(browser: Browser, web_stack: Stack, shot: Shot) -> None:
    api = f"{web_stack.api_url}/api/v1"
    auth = {"Authorization": f"Bearer {WRITE_TOKEN}"}
    async with aiohttp.ClientSession(headers=auth) as http:
        async with http.put(f"{api}/templates/nightly-web", data=TEMPLATE,
                            headers={"Content-Type": "application/yaml"}) as resp:
            assert resp.status in (200, 201), await resp.text()
        async with http.put(f"{api}/templates/nightly-web/schedule", json=SCHEDULE) as resp:
            assert resp.status in (200, 201), await resp.text()
            stored: dict[str, Any] = await resp.json()
    upcoming = stored["nextFireTimes"][:3]
    assert len(upcoming) == 3, stored

    context = await new_context(browser, web_stack, token=READ_TOKEN)
    page = await context.new_page()
    try:
        await page.goto("/templates")
        times = page.get_by_role("list", name="Next fire times of nightly-web")
        await expect(times.locator("time")).to_have_count(3)
        assert [await t.get_attribute("datetime") for t in await times.locator("time").all()] == upcoming
        row = page.locator("#templates-table tr", has=page.get_by_text("nightly-web", exact=True))
        await expect(row).to_contain_text("0 3 1 1 *")
        await expect(row).to_contain_text("Europe/Berlin, Forbid")
        await expect(row).to_contain_text("active")
        # The runs of its DAG name: the runs list, filtered.
        link = page.get_by_role("link", name="Runs of web-scheduled")
        assert await link.get_attribute("href") == "/?name=web-scheduled"
        assert await axe_violations(page) == []
        await shot(page, "schedule-shown")

        # A read-only token may look, not pause: the page's usual message, nothing changed.
        pause = page.get_by_role("button", name="Pause the schedule of nightly-web")
        await pause.click()
        await expect(page.locator("#schedule-message")).to_contain_text("A token that may do this is needed")
        await expect(page.get_by_role("form", name="API token")).to_contain_text("lacks the scope")

        # With the write token, from the keyboard.
        await page.evaluate(f"localStorage.setItem('helios.token', {WRITE_TOKEN!r})")
        await page.reload()
        pause = page.get_by_role("button", name="Pause the schedule of nightly-web")
        await pause.focus()
        await page.keyboard.press("Enter")
        resume = page.get_by_role("button", name="Resume the schedule of nightly-web")
        await expect(resume).to_be_focused()
        await expect(row).to_contain_text("paused")
        await expect(page.locator("#schedule-message")).to_contain_text("is paused")
        async with aiohttp.ClientSession(headers=auth) as http, http.get(
                f"{api}/templates/nightly-web/schedule") as resp:
            assert (await resp.json())["paused"] is True
        assert await axe_violations(page) == []
        await shot(page, "schedule-paused")
        await page.emulate_media(color_scheme="dark")  # the same contrast checks in dark mode
        assert await axe_violations(page) == []
        await shot(page, "schedule-paused-dark")

        await link.click()
        await expect(page.get_by_role("heading", name="Runs")).to_be_visible()
        await expect(page.get_by_label("DAG name")).to_have_value("web-scheduled")
    finally:
        await context.close()
        async with aiohttp.ClientSession(headers=auth) as http, http.delete(
                f"{api}/templates/nightly-web/schedule") as resp:
            assert resp.status in (204, 404)
