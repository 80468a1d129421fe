"""Helpers of the page tests: axe-core checks, the editor, waiting on the API, vitest."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from typing import Any

import aiohttp
import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Page

from tests.conftest import WRITE_TOKEN
from tests.web.conftest import WEB

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


def run_vitest(folder: str) -> str:
    """vitest's verbose output for the page's units under `src/<folder>` (installing the
    page's node modules first if needed); fails the test when vitest does."""
    vitest = WEB / "node_modules" / ".bin" / "vitest"
    if not vitest.is_file():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is missing: run ./run.sh test")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True,
                       capture_output=True, timeout=300)
    done = subprocess.run([str(vitest), "run", f"src/{folder}", "--reporter=verbose", "--no-color"],
                          cwd=WEB, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    return done.stdout
