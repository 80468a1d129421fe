"""The web page end to end, in headless Chromium against the real services: submit the seed
example from the page (cache on, twice; then off), see the cache hit and the speedup in the
metrics panel's cards, table and chart; an invalid DAG's error at its line; the runs list
filtered by name and state; axe-core on every page. One test, so the runs it makes serve
every check (each run costs seconds; the whole test ~20 s)."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from tests.stack import Stack
from tests.web.conftest import Shot
from tests.web.pagekit import axe_violations, run_state, set_editor

INVALID = """apiVersion: v1
dagName: "bad-dag"
tasks:
  - name: "first"
    image: "ubuntu:latest"
    command: ["/bin/true"]
  - name: "second"
    image: "ubuntu:latest"
    depends_on: ["first"]
    command: []
"""  # tasks[1].command is empty: line 10

SPEEDUP = re.compile("^\\d+\\.\\d\\d\u00d7$")  # "1.23" and a multiplication sign

OTHER = """apiVersion: v1
dagName: "other-dag"
tasks:
  - {name: "only", image: "ubuntu:latest", command: ["/bin/true"]}
"""


async def submit_from_page(page: Page, stack: Stack, *, cache: bool) -> str:
    await page.goto("/submit")
    editor = page.locator("#dag-editor .cm-content")
    await expect(editor).to_contain_text('dagName: "cache-test"')  # the seed, preloaded
    box = page.get_by_label("Enable cache")
    await expect(box).to_be_checked()  # on by default
    if not cache:
        await box.uncheck()
    await page.get_by_role("button", name="Submit", exact=True).click()
    await page.wait_for_url(re.compile(r"/runs/[0-9a-f]{32}$"))
    dag_id = page.url.rsplit("/", 1)[1]
    run = await run_state(stack.api_url, dag_id)
    # The run view (tests/web/test_run_view.py covers it) follows the run to its end.
    await expect(page.locator(".rv")).to_have_attribute("data-status", "SUCCEEDED", timeout=30_000)
    assert run["status"] == "SUCCEEDED" and run["useCache"] is cache, run
    return dag_id


async def test_submit_metrics_errors_and_runs_list(page: Page, web_stack: Stack, shot: Shot) -> None:
    # -- the home page before any run: it says how to submit one
    await page.goto("/")
    await expect(page.get_by_text("No runs yet.")).to_be_visible()
    await expect(page.get_by_role("link", name="Submit a DAG").first).to_be_visible()
    assert await axe_violations(page) == []
    await shot(page, "runs-empty")

    # -- submit: the seed preloaded, its preview graph, the cache box on
    await page.goto("/submit")
    preview = page.locator("#dag-preview svg")
    await expect(preview).to_have_attribute("aria-label", re.compile(r"2 tasks \(generate-data, process-data\)"))
    await expect(page.locator("#dag-preview .node")).to_have_count(2)
    await expect(page.locator("#dag-preview .edge")).to_have_count(1)
    assert await axe_violations(page) == []
    await shot(page, "submit-seed")

    first = await submit_from_page(page, web_stack, cache=True)
    await shot(page, "run-view-first")
    second = await submit_from_page(page, web_stack, cache=True)
    third = await submit_from_page(page, web_stack, cache=False)

    # -- the metrics panel: the seed's cards and table, the chart, the speedup
    await page.goto("/dags/cache-test")
    cards = page.locator("#metrics-cards")
    await expect(cards.locator("#card-cached .big")).to_have_text("2")
    await expect(cards.locator("#card-uncached .big")).to_have_text("1")
    await expect(cards.locator("#card-cached")).to_contain_text("Avg duration:")
    await expect(cards.locator("#card-uncached")).to_contain_text("Avg duration:")
    await expect(cards.locator("#card-cached")).to_contain_text("Cache hit ratio: 50%")  # a miss, then a hit
    await expect(cards.locator("#card-last .big")).to_have_text("2/2 ok")
    await expect(cards.locator("#card-speedup .big")).to_have_text(SPEEDUP)
    table = page.locator("#metrics-table")
    headers = await table.locator("thead th").all_inner_texts()
    assert [h.strip().lower() for h in headers] == [
        "run id", "start time", "duration", "cache enabled", "cache hit", "status", "tasks", "nodes"]
    rows = table.locator("tbody tr")
    await expect(rows).to_have_count(3)
    by_run = {}
    for i in range(3):
        cells = [c.strip() for c in await rows.nth(i).locator("td").all_inner_texts()]
        by_run[await rows.nth(i).locator("a").get_attribute("href")] = cells
    assert by_run[f"/runs/{third}"][3:7] == ["No", "N/A", "SUCCEEDED", "2/2"], by_run
    assert by_run[f"/runs/{second}"][3:7] == ["Yes", "Hit", "SUCCEEDED", "2/2"], by_run
    assert by_run[f"/runs/{first}"][3:7] == ["Yes", "Miss", "SUCCEEDED", "2/2"], by_run
    # The chart: three bars (two cached, one not) and the p50/p95 lines of both groups.
    chart = page.locator("#metrics-chart")
    await expect(chart.locator("canvas")).to_have_count(1)
    await expect(chart).to_have_attribute("aria-label", re.compile(r"cached: p50 .* not cached: p50"))
    legend = await chart.locator(".u-legend").inner_text()
    for series in ("cached", "not cached", "cached p50", "cached p95", "not cached p50", "not cached p95"):
        assert series in legend, legend
    assert await axe_violations(page) == []
    await shot(page, "metrics-after-three-runs")

    # -- an invalid DAG: the API's field path shown at its line in the editor
    await page.goto("/submit")
    await set_editor(page, INVALID)
    await expect(page.locator("#dag-preview svg")).to_have_attribute("aria-label", re.compile("2 tasks"))
    await page.get_by_role("button", name="Submit", exact=True).click()
    errors = page.locator("#submit-errors")
    await expect(errors).to_contain_text("invalid DAG")
    await expect(errors.locator("li")).to_have_count(1)
    await expect(errors.locator("li")).to_contain_text("Line 10")
    await expect(errors.locator("li")).to_contain_text("tasks[1].command")
    marked = page.locator("#dag-editor .cm-lintRange-error")
    await expect(marked).to_have_count(1)
    await expect(marked).to_have_text("command: []")  # the empty command, on line 10
    assert "/submit" in page.url  # nothing submitted
    # The error's "Line 10" button moves the editor's cursor there.
    await errors.get_by_role("button", name="Line 10").click()
    await expect(page.locator("#dag-editor .cm-activeLine")).to_contain_text("command: []")
    assert await axe_violations(page) == []
    await shot(page, "submit-invalid")

    # -- the runs list: newest first, filtered by name and by state
    await page.goto("/submit")
    await set_editor(page, OTHER)
    await page.get_by_role("button", name="Submit", exact=True).click()
    await page.wait_for_url(re.compile(r"/runs/[0-9a-f]{32}$"))
    other = page.url.rsplit("/", 1)[1]
    await run_state(web_stack.api_url, other)
    await page.goto("/")
    runs = page.locator("#runs-table tbody tr")
    await expect(runs).to_have_count(4)
    order = [await runs.nth(i).locator("a").first.get_attribute("href") for i in range(4)]
    assert order == [f"/runs/{x}" for x in (other, third, second, first)]
    assert await axe_violations(page) == []
    await shot(page, "runs-all")
    await page.get_by_label("DAG name").fill("cache-test")
    await expect(runs).to_have_count(3)
    assert "name=cache-test" in page.url  # the filter is in the URL: it survives a reload
    await page.reload()
    await expect(runs).to_have_count(3)
    await page.get_by_label("State").select_option("FAILED")
    await expect(page.get_by_text("No runs match these filters.")).to_be_visible()
    await page.get_by_label("State").select_option("SUCCEEDED")
    await expect(runs).to_have_count(3)
    await shot(page, "runs-filtered")
    # Pages: two runs a page, newer and older by the API's cursors.
    await page.goto("/?limit=2")
    await expect(runs).to_have_count(2)
    older, newer = page.get_by_role("button", name="Older"), page.get_by_role("button", name="Newer")
    await expect(newer).to_be_disabled()
    await older.click()
    await expect(page.get_by_text("Page 2")).to_be_visible()
    await expect(runs.first.locator("a").first).to_have_attribute("href", f"/runs/{second}")
    await expect(runs).to_have_count(2)
    await newer.click()
    await expect(runs.first.locator("a").first).to_have_attribute("href", f"/runs/{other}")
    await runs.first.locator("a").first.click()
    await page.wait_for_url(f"**/runs/{other}")
