"""Helpers of the page tests: axe-core checks, the editor, and waiting on the API."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Page

from tests.conftest import WRITE_TOKEN

_AXE = Axe()
BLOCKING = ("serious", "critical")


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now (WCAG 2 A/AA
    rules and best practices), each with the nodes it found."""
    results = await _AXE.run(page)
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"],
         "nodes": [n.get("target") for n in v.get("nodes", [])][:5]}
        for v in results.response["violations"] if v.get("impact") in BLOCKING
    ]


async def set_editor(page: Page, text: str) -> None:
    """Replace the YAML editor's document as a user would: select all, then type."""
    content = page.locator("#dag-editor .cm-content")
    await content.click()
    await page.keyboard.press("Control+A")
    await page.keyboard.press("Delete")
    # insert_text: one input event, not the editor's auto-indent on every newline.
    await page.keyboard.insert_text(text)


async def run_state(api_url: str, dag_id: str, want: tuple[str, ...] = ("SUCCEEDED", "FAILED", "CANCELLED"),
                    timeout_s: float = 60.0) -> dict[str, Any]:
    """The run's status once its state is one of `want` (polled: the page's own feed is
    what the test looks at; this only tells the test when to look)."""
    headers = {"Authorization": f"Bearer {WRITE_TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http, asyncio.timeout(timeout_s):
        while True:
            async with http.get(f"{api_url}/api/v1/dags/{dag_id}") as resp:
                body: dict[str, Any] = await resp.json()
            if body.get("status") in want:
                return body
            await asyncio.sleep(0.1)
