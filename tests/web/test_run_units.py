"""The run view's pure TypeScript (SSE grammar, snapshot/event merging, attempt segments,
mapped-task grouping, quick layout) under vitest, so `pytest` runs them with the suite."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.web.conftest import WEB


def test_run_view_units() -> None:
    vitest = WEB / "node_modules" / ".bin" / "vitest"
    if not vitest.is_file():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is missing: run ./run.sh test")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True,
                       capture_output=True, timeout=300)
    done = subprocess.run([str(vitest), "run", "src/run", "--reporter=verbose", "--no-color"],
                          cwd=WEB, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout, done.stdout[-2000:]
