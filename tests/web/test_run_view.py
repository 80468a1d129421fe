"""The run view (/runs/{dagId}) in headless Chromium against the real services.

Deterministic without sleeps: runs are submitted while the scheduler is stopped, so the
page sees them PENDING and then watches every transition arrive over the feed once the
scheduler starts; the dropped connection is a real stop and restart of the api service.
The 1,000-task run is held by a long first task and cancelled from the page's button.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from playwright.async_api import Page, Request, expect

from helios import keys
from tests.stack import Stack, follow, submit
from tests.web.conftest import Shot, new_context
from tests.web.pagekit import axe_violations, run_state

# Waits on the services' progress (not on the page): generous, CI may run at load average 5.
RUN_MS = 60_000

SEED_TASKS: list[dict[str, Any]] = [
    {"name": "generate-data", "image": "ubuntu:latest",
     "command": ["/bin/bash", "-c", "echo 'test data' > /artifacts/output.txt"], "outputs": ["output.txt"]},
    {"name": "process-data", "image": "ubuntu:latest", "depends_on": ["generate-data"],
     "command": ["/bin/bash", "-c", "cat /artifacts/input.txt"],
     "inputs": [{"fromTask": "generate-data", "name": "input.txt"}]},
]


def seed(name: str) -> dict[str, Any]:
    """The seed example under its own name (the metrics of `cache-test` belong to test_page)."""
    return {"apiVersion": "v1", "dagName": name, "tasks": SEED_TASKS}


def node(page: Page, group: str) -> Any:
    return page.locator(f'.rv-node[data-group="{group}"]')


def row(page: Page, task: str) -> Any:
    return page.locator(f'.rv-row[data-task="{task}"]')


async def run_record_state(stack: Stack, dag_id: str, want: set[str], timeout_s: float = 60.0) -> str:
    """The run's state in Redis once it is in `want` (for when the api is down on purpose)."""
    r = aioredis.Redis.from_url(stack.settings.redis.url, decode_responses=True)
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                state = await r.hget(keys.run(dag_id), "state")
                if state in want:
                    return str(state)
                await asyncio.sleep(0.1)
    finally:
        await r.aclose()


async def test_live_graph_timeline_logs_isolation_and_reconnect(
    page: Page, web_stack: Stack, http: aiohttp.ClientSession, shot: Shot,
) -> None:
    api = web_stack.api_url
    feeds: list[Request] = []
    first_feed_closed = asyncio.Event()
    page.on("request", lambda r: feeds.append(r) if r.url.endswith("/events") else None)
    try:
        # Two runs submitted in a row, both held PENDING while the scheduler is away.
        await web_stack.stop("scheduler")
        first = (await submit(http, api, seed("rv-seed")))["dagId"]
        page.on("requestfailed", lambda r: first_feed_closed.set() if r.url.endswith(f"{first}/events") else None)
        second = (await submit(http, api, {"apiVersion": "v1", "dagName": "rv-other", "tasks": [
            {"name": "only-in-other", "image": "ubuntu:latest", "command": ["/bin/true"]}]}))["dagId"]

        await page.goto(f"/runs/{first}")
        await expect(page.locator(".rv")).to_have_attribute("data-feed", "live")
        await expect(node(page, "generate-data")).to_have_attribute("data-state", "PENDING")
        await expect(page.locator(".rv-node")).to_have_count(2)
        await shot(page, "pending")

        # The second run's view, reached within the page: the first run's feed is closed.
        await page.evaluate(
            f"history.pushState(null, '', '/runs/{second}'); dispatchEvent(new PopStateEvent('popstate'))")
        await expect(node(page, "only-in-other")).to_have_attribute("data-state", "PENDING")
        await expect(page.locator(".rv-node")).to_have_count(1)
        await asyncio.wait_for(first_feed_closed.wait(), 30)  # the request, not just the view
        await page.go_back()
        await expect(node(page, "generate-data")).to_be_visible()

        # The scheduler comes back: both tasks turn green live, on the graph and the timeline.
        await web_stack.start("scheduler")
        for task in ("generate-data", "process-data"):
            await expect(node(page, task)).to_have_attribute("data-state", "SUCCEEDED", timeout=RUN_MS)
            await expect(row(page, task)).to_have_attribute("data-state", "SUCCEEDED", timeout=RUN_MS)
            bar = row(page, task).locator(".rv-attempt.outcome-succeeded .rv-seg.running")
            await expect(bar).to_have_count(1, timeout=RUN_MS)
        await expect(page.locator(".rv")).to_have_attribute("data-status", "SUCCEEDED", timeout=RUN_MS)
        await expect(page.locator(".rv")).to_have_attribute("data-feed", "ended", timeout=RUN_MS)
        await expect(page.get_by_role("status").filter(has_text="The run is now succeeded.")).to_have_count(1)
        await expect(page.locator(".rv-node")).to_have_count(2)  # nothing of the other run
        assert await page.locator("text=only-in-other").count() == 0
        await shot(page, "succeeded-live")

        # A task's details with the mouse: logs, the input's cache miss, the time breakdown.
        await node(page, "process-data").click()
        details = page.locator(".rv-details")
        await expect(details.locator(".rv-log")).to_contain_text("test data")
        await expect(details.locator(".rv-inputs-table")).to_contain_text("input.txt")
        await expect(details.locator(".rv-inputs-table tbody td").nth(1)).to_have_text("miss")
        await expect(details.locator(".rv-attempts tbody tr")).to_have_count(1)
        await expect(details).to_contain_text("Exit code")
        assert "task=process-data" in page.url
        assert await axe_violations(page) == []
        await shot(page, "task-logs")
        # ... and with the keyboard: Escape closes and returns focus to the node; arrows move.
        await page.keyboard.press("Escape")
        await expect(details).to_be_hidden()
        await expect(node(page, "process-data")).to_be_focused()
        await page.keyboard.press("ArrowLeft")
        await expect(node(page, "generate-data")).to_be_focused()
        await page.keyboard.press("Enter")
        await expect(details.locator("h2")).to_contain_text("generate-data")
        await expect(details.locator("h2")).to_be_focused()
        # A reload keeps the run and the open task.
        await page.reload()
        await expect(details.locator("h2")).to_contain_text("generate-data")
        await expect(node(page, "generate-data")).to_have_attribute("data-state", "SUCCEEDED")
        # The timeline's rows too: arrows move, Enter opens, Escape comes back to the row.
        await row(page, "generate-data").locator("button").focus()
        await page.keyboard.press("ArrowDown")
        await expect(row(page, "process-data").locator("button")).to_be_focused()
        await page.keyboard.press("Enter")
        await expect(details.locator("h2")).to_contain_text("process-data")
        await expect(details.locator("h2")).to_be_focused()
        await page.keyboard.press("Escape")
        await expect(row(page, "process-data").locator("button")).to_be_focused()

        # The other run's view shows its own run only.
        await page.goto(f"/runs/{second}")
        await expect(node(page, "only-in-other")).to_have_attribute("data-state", "SUCCEEDED", timeout=RUN_MS)
        assert await page.locator("text=generate-data").count() == 0

        # Dropped connection mid-run: with the executor away the run stops at QUEUED; the api
        # goes down, the run finishes meanwhile, the api comes back and the page resumes
        # after the last event it had: every transition once, none lost, none twice.
        await web_stack.stop("watcher")
        third = (await submit(http, api, seed("rv-seed")))["dagId"]
        await page.goto(f"/runs/{third}")
        await expect(node(page, "generate-data")).to_have_attribute("data-state", "QUEUED", timeout=RUN_MS)
        last_seen = await page.locator(".rv").get_attribute("data-last-event-id")
        assert last_seen is not None
        before = len(feeds)
        await web_stack.stop("api")
        await expect(page.locator(".rv")).to_have_attribute("data-feed", "waiting")
        await shot(page, "reconnecting")
        await web_stack.start("watcher")
        assert await run_record_state(web_stack, third, {"SUCCEEDED", "FAILED"}) == "SUCCEEDED"
        await web_stack.start("api")
        for task in ("generate-data", "process-data"):
            await expect(node(page, task)).to_have_attribute("data-state", "SUCCEEDED", timeout=RUN_MS)
            await expect(row(page, task).locator(".rv-attempt")).to_have_count(1, timeout=RUN_MS)
        await expect(page.locator(".rv")).to_have_attribute("data-status", "SUCCEEDED", timeout=RUN_MS)
        everything = await follow(http, api, third)
        await expect(page.locator(".rv")).to_have_attribute("data-last-event-id", str(everything[-1]["_id"]))
        await expect(page.locator(".rv")).to_have_attribute("data-events", str(len(everything)))
        resumed = [r.headers.get("last-event-id") for r in feeds[before:]]
        assert last_seen in resumed, (last_seen, resumed)  # resumed where it stopped
        await node(page, "process-data").click()
        await expect(page.locator(".rv-inputs-table tbody td").nth(1)).to_have_text("hit")  # second run: cached
        await shot(page, "caught-up")
    finally:
        for name in ("scheduler", "watcher", "api"):
            if name not in web_stack.services:
                await web_stack.start(name)


def thousand_tasks() -> dict[str, Any]:
    """1,000 tasks in 20 layers of 50 behind one long first task; a few long names."""
    tasks: list[dict[str, Any]] = [{"name": "gate", "image": "ubuntu:latest",
                                    "command": ["/bin/sh", "-c", "echo holding the run; exec sleep 600"]}]
    width = 50
    for i in range(999):
        layer, pos = divmod(i, width)
        name = f"t{i:03d}" if i % 97 else f"t{i:03d}-{'a-very-long-task-name-' * 2}end"
        deps = ["gate"] if layer == 0 else [tasks[1 + (layer - 1) * width + pos]["name"],
                                            tasks[1 + (layer - 1) * width + (pos + 7) % width]["name"]]
        tasks.append({"name": name, "image": "ubuntu:latest", "command": ["/bin/true"], "depends_on": deps})
    return {"apiVersion": "v1", "dagName": "rv-thousand", "tasks": tasks}


LONG_TASKS = """
window.__longTasks = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__longTasks.push(Math.round(e.duration));
}).observe({ type: "longtask", buffered: true });
"""


async def test_thousand_tasks_cancelled_from_the_page(
    page: Page, web_stack: Stack, http: aiohttp.ClientSession, shot: Shot,
) -> None:
    api = web_stack.api_url
    await page.add_init_script(LONG_TASKS)

    # A 1,000-task run: painted at once (quick layout), then laid out by ELK in its worker
    # while all 1,000 tasks are cancelled from the page's button, without freezing the tab.
    big = (await submit(http, api, thousand_tasks()))["dagId"]
    started = time.monotonic()
    await page.goto(f"/runs/{big}")
    await expect(page.locator(".rv-node")).to_have_count(1000)
    await expect(page.locator(".rv-row")).to_have_count(1000)
    shown_s = time.monotonic() - started
    await expect(node(page, "gate")).to_have_attribute("data-state", "RUNNING", timeout=RUN_MS)
    # The running task's log, live.
    await node(page, "gate").click()
    await expect(page.locator(".rv-log")).to_contain_text("holding the run", timeout=RUN_MS)
    await expect(page.locator(".rv-log-note")).to_contain_text("following")
    await shot(page, "thousand-tasks")
    await expect(page.get_by_role("button", name="Retry failed tasks")).to_be_disabled()
    await page.get_by_role("button", name="Cancel run").click()
    await expect(page.locator(".rv")).to_have_attribute("data-status", "CANCELLED", timeout=60_000)
    await expect(page.locator('.rv-node[data-state="CANCELLED"]')).to_have_count(1000)
    await expect(page.get_by_role("button", name="Cancel run")).to_be_disabled()
    await expect(page.locator(".rv-action-msg")).to_have_text("Cancelled.")
    await expect(page.locator(".rv-details h2")).to_contain_text("CANCELLED")
    await expect(page.locator(".rv")).to_have_attribute("data-layout", "elk", timeout=60_000)
    render_ms = int(await page.locator(".rv").get_attribute("data-render-ms") or -1)
    layout_ms = int(await page.locator(".rv").get_attribute("data-layout-ms") or -1)
    longest = max(await page.evaluate("window.__longTasks"), default=0)
    await page.get_by_role("button", name="Fit the graph to the width").click()  # the whole graph
    await expect(page.locator(".rv-zoom-level")).to_have_text(re.compile(r"^\d%$|^1\d%$"))
    await shot(page, "thousand-cancelled")
    print(f"\n1,000-task run view: shown in {shown_s:.2f} s (first paint {render_ms} ms), ELK layout"
          f" {layout_ms} ms in its worker; longest main-thread task {longest} ms (load, layout,"
          " 1,000 cancellations)")
    # A frozen tab (layout on the main thread, a re-render per event) blocks for tens of
    # seconds here; this bound is generous for a loaded CI machine (load average 30 gave
    # 1.6 s, mostly style and layout of 2,000 new elements; a quiet one a few hundred ms).
    assert longest < 4000, longest


async def test_retry_failed_run_not_found_and_dark_mode(
    page: Page, web_stack: Stack, http: aiohttp.ClientSession, shot: Shot,
) -> None:
    # Retry a failed run from the button: its failed task runs again (a second attempt).
    api = web_stack.api_url
    failing = (await submit(http, api, {"apiVersion": "v1", "dagName": "rv-failing", "tasks": [
        {"name": "breaks", "image": "ubuntu:latest", "command": ["/bin/sh", "-c", "echo broken >&2; exit 3"]},
        {"name": "after", "image": "ubuntu:latest", "command": ["/bin/true"], "depends_on": ["breaks"]},
        {"name": "fan", "image": "ubuntu:latest", "command": ["/bin/true"], "forEach": ["x", "y", "z"]},
        {"name": "never", "image": "ubuntu:latest", "command": ["/bin/true"], "when": "1 == 2"}]}))["dagId"]
    await run_state(api, failing)
    await page.goto(f"/runs/{failing}")
    # A mapped task is one node; its instances are rows of the timeline and a list to pick from.
    await expect(node(page, "fan")).to_have_attribute("aria-label", "fan: succeeded \u00b7 3/3 done")
    await expect(page.locator('.rv-row[data-task^="fan["]')).to_have_count(3)
    await node(page, "fan").click()
    await expect(page.locator(".rv-instances li")).to_have_count(3)
    await page.locator(".rv-instances button", has_text="fan[1]").click()
    await expect(page.locator(".rv-details h2")).to_contain_text("fan[1]")
    await expect(node(page, "breaks")).to_have_attribute("data-state", "FAILED")
    await expect(node(page, "after")).to_have_attribute("data-state", "UPSTREAM_FAILED")
    await expect(node(page, "never")).to_have_attribute("data-state", "SKIPPED")
    await node(page, "breaks").click()
    await expect(page.locator(".rv-details dt:text-is('Exit code') + dd")).to_have_text("3")
    await expect(page.locator(".rv-log")).to_contain_text("broken")
    retry = page.get_by_role("button", name="Retry failed tasks")
    await expect(retry).to_be_enabled()
    await retry.click()
    await expect(page.locator(".rv-action-msg")).to_have_text("Retry started.", timeout=RUN_MS)
    await expect(row(page, "breaks").locator(".rv-attempt")).to_have_count(2, timeout=RUN_MS)
    await expect(row(page, "breaks").locator(".rv-attempt.outcome-failed")).to_have_count(2, timeout=RUN_MS)
    await expect(page.locator(".rv")).to_have_attribute("data-status", "FAILED", timeout=RUN_MS)
    await expect(page.locator(".rv-details .rv-attempts tbody tr")).to_have_count(2)
    await expect(page.locator(".rv-meta")).to_contain_text("retried 1\u00d7")
    await expect(page.locator(".rv-log")).to_contain_text("attempt 2", timeout=RUN_MS)
    await shot(page, "retried")

    # An unknown run, and the page in dark mode passes axe too.
    await page.goto(f"/runs/{'0' * 32}")
    await expect(page.get_by_role("heading", name="Run not found")).to_be_visible()
    await shot(page, "not-found")
    dark = await new_context(page.context.browser, web_stack, color_scheme="dark")  # type: ignore[arg-type]
    try:
        dpage = await dark.new_page()
        await dpage.goto(f"/runs/{failing}?task=breaks")
        await expect(dpage.locator(".rv-log")).to_contain_text("broken")
        assert await axe_violations(dpage) == []
        await shot(dpage, "dark")
    finally:
        await dark.close()
