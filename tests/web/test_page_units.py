"""The page's pure TypeScript outside the run view (field paths to editor lines, the
preview graph, routes, formats, chart data) under vitest, so `pytest` runs them too."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.web.conftest import WEB


def test_page_units() -> None:
    vitest = WEB / "node_modules" / ".bin" / "vitest"
    if not vitest.is_file():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is missing: run ./run.sh test")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True,
                       capture_output=True, timeout=300)
    done = subprocess.run([str(vitest), "run", "src/units", "--reporter=verbose", "--no-color"],
                          cwd=WEB, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and " failed" not in done.stdout, done.stdout[-2000:]
