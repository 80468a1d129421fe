"""The run view's pure TypeScript (SSE grammar, snapshot/event merging, attempt segments,
mapped-task grouping, quick layout) under vitest, so `pytest` runs them with the suite."""

from __future__ import annotations

from tests.web.pagekit import run_vitest


def test_run_view_units() -> None:
    out = run_vitest("run")
    assert " passed" in out, out[-2000:]
