"""The page's pure TypeScript outside the run view (field paths to editor lines, the
preview graph, routes, formats, chart data) under vitest, so `pytest` runs them too."""

from __future__ import annotations

from tests.web.pagekit import run_vitest


def test_page_units() -> None:
    out = run_vitest("units")
    assert " passed" in out and " failed" not in out, out[-2000:]
