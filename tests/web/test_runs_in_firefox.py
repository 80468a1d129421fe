"""The page's main journey in Firefox (Debian's firefox-esr over WebDriver BiDi, driven by
puppeteer-core from web/'s lockfile): submit the seed, follow the run live to its end with
the graph laid out in its worker, read a task's log, see the run in the metrics panel and
the runs list, with no page error. The Chromium tests check each view in depth; this one
proves the page works in the other engine users run. The file name keeps it after the
Chromium tests of this package, which start from an empty runs list."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from tests.stack import Stack
from tests.web.conftest import SHOTS, WEB, WRITE_TOKEN

FIREFOX = os.environ.get("HELIOS_TEST_FIREFOX", "/usr/bin/firefox-esr")
JOURNEY = WEB / "tests" / "firefox-journey.mjs"


@pytest.mark.timeout(300)
async def test_the_main_journey_works_in_firefox(web_stack: Stack, built_page: Path) -> None:
    node = shutil.which("node")
    if node is None or not Path(FIREFOX).is_file():
        pytest.fail(f"node and {FIREFOX} are needed: `apt-get install firefox-esr` "
                    "(./run.sh test does)")
    proc = await asyncio.create_subprocess_exec(
        node, str(JOURNEY), web_stack.api_url, WRITE_TOKEN, str(SHOTS / "firefox"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HELIOS_TEST_FIREFOX": FIREFOX},
        start_new_session=True)  # its own group: a timeout takes Firefox down with node
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 240)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = await proc.communicate()
    lines = out.decode(errors="replace").strip().splitlines()
    assert lines, err.decode(errors="replace")[-3000:]
    report = json.loads(lines[-1])
    assert report["ok"] and proc.returncode == 0, (report, err.decode(errors="replace")[-3000:])
    assert "Firefox/" in report["userAgent"], report
    assert len(report["steps"]) == 6, report
    print("\nFirefox:", report["userAgent"], *report["steps"], sep="\n  ")
