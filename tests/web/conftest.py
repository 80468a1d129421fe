"""The web page in headless Chromium against the real services.

One stack (all four services on the session's NATS, Valkey and SeaweedFS) and one browser
serve every test of this package: starting them costs seconds, a browser context is cheap.
Chromium is Debian's (`/usr/bin/chromium`, installed by `./run.sh test`); nothing here ever
downloads a browser. Each test step may write a screenshot under `.artifacts/screenshots/`
(not committed) so a reviewer can look at what the page showed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from helios.devstack.servers import Endpoints
from helios.s3 import ensure_bucket, open_s3
from tests.conftest import READ_TOKEN, WRITE_TOKEN, make_settings, reset_backends
from tests.stack import Stack, running_stack

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
BUILT = ROOT / "services" / "api" / "static" / "index.html"
SHOTS = ROOT / ".artifacts" / "screenshots"
CHROMIUM = os.environ.get("HELIOS_TEST_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps dialling Google's hosts, which
# this machine's closed network refuses; the sandbox needs user namespaces root lacks here.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# Generous: CI may run at load average 5.
TIMEOUT_MS = 30_000
expect.set_options(timeout=15_000)

__all__ = ["READ_TOKEN", "WRITE_TOKEN", "Shot"]

Shot = Callable[[Page, str], Awaitable[None]]


def _stale() -> bool:
    if not BUILT.is_file():
        return True
    built = BUILT.stat().st_mtime
    sources = [WEB / "index.html", WEB / "package.json", WEB / "package-lock.json", WEB / "vite.config.ts"]
    sources += [p for p in (WEB / "src").rglob("*") if p.is_file()]
    return any(p.stat().st_mtime > built for p in sources if p.exists())


@pytest.fixture(scope="session")
def built_page() -> Path:
    """The page as the api serves it, rebuilt if a source changed since (./run.sh builds it
    too; this keeps a plain `pytest tests/web` honest)."""
    if _stale():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("the web page is not built and npm is missing: run ./run.sh test")
        if not (WEB / "node_modules").is_dir():
            subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True,
                           capture_output=True, timeout=300)
        done = subprocess.run([npm, "run", "build"], cwd=WEB, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    return BUILT


@pytest.fixture(scope="package")
async def web_stack(endpoints: Endpoints, tmp_path_factory: pytest.TempPathFactory,
                    built_page: Path) -> AsyncIterator[Stack]:
    """All four services, shared by this package's tests (runs of different DAG names)."""
    await reset_backends(endpoints)
    settings = make_settings(endpoints, tmp_path_factory.mktemp("web"))
    async with open_s3(settings.s3) as s3:
        await ensure_bucket(s3, settings.s3.bucket)
    async with running_stack(settings) as stack:
        yield stack


@pytest.fixture(scope="package")
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install chromium` (./run.sh test does)")
    async with async_playwright() as pw:
        # Playwright gives each launch a fresh, temporary profile (user data dir).
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                           headless=True)
        try:
            yield browser
        finally:
            await browser.close()


async def new_context(browser: Browser, stack: Stack, token: str | None = WRITE_TOKEN,
                      color_scheme: str = "light") -> BrowserContext:
    """A fresh browser profile on the stack's api, with `token` already stored (or none)."""
    context = await browser.new_context(base_url=stack.api_url, viewport={"width": 1366, "height": 900},
                                        color_scheme=color_scheme)  # type: ignore[arg-type]
    context.set_default_timeout(TIMEOUT_MS)
    if token is not None:
        await context.add_init_script(
            f"if (!localStorage.getItem('helios.token')) localStorage.setItem('helios.token', {token!r});")
    return context


def cold_cache(stack: Stack) -> None:
    """Empty the node cache (entries and their markers; the cache reads both from disk):
    each test's first run of the seed is a miss, whatever ran before it on this stack."""
    for part in ("sha256", "meta"):
        shutil.rmtree(stack.settings.cache.dir / part, ignore_errors=True)


@pytest.fixture
async def page(browser: Browser, web_stack: Stack) -> AsyncIterator[Page]:
    """A page logged in with the write token, on a cold node cache; its console errors
    fail the test."""
    cold_cache(web_stack)
    context = await new_context(browser, web_stack)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        await context.close()
    assert not errors, errors


@pytest.fixture
def shot(request: pytest.FixtureRequest) -> Shot:
    """`await shot(page, "what")` writes .artifacts/screenshots/<test>/<NN>-<what>.png."""
    folder = SHOTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    counter = iter(range(1, 1000))

    async def take(page: Page, what: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{next(counter):02d}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', what)}.png"
        await page.screenshot(path=str(folder / name), full_page=True)

    return take
