"""How the api serves the page: one index.html for every page path (public, never cached,
locked to its own origin by CSP), content-hashed assets cached for good, nothing outside
the build folder, and a plain explanation when the page was never built."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.api import page


@contextlib.asynccontextmanager
async def serving(root: Path | None = None) -> AsyncIterator[str]:
    app = web.Application(middlewares=[page.browser_not_found(root)])
    app.add_routes(page.routes(root))
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    try:
        yield str(srv.make_url("")).rstrip("/")
    finally:
        await srv.close()


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async with serving() as url:
        yield url


async def test_page_paths_assets_and_refusals(server: str, built_page: Path) -> None:
    async with aiohttp.ClientSession() as http:
        shells = []
        for path in ("/", "/submit", "/templates", "/runs/" + "a" * 32, "/dags/cache-test"):
            async with http.get(server + path) as resp:
                assert resp.status == 200 and resp.content_type == "text/html", path
                assert resp.headers["Cache-Control"] == "no-cache"
                assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
                shells.append(await resp.text())
        assert len(set(shells)) == 1  # the app routes in the browser
        assets = re.findall(r'(?:src|href)="(/assets/[^"]+)"', shells[0])
        assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
        # Nothing is loaded from another origin (air-gapped clusters).
        assert not re.search(r'(?:src|href)="(?:https?:)?//', shells[0])
        for asset in assets:
            async with http.get(server + asset) as resp:
                assert resp.status == 200, asset
                assert resp.content_type == ("text/javascript" if asset.endswith(".js") else "text/css")
                assert "immutable" in resp.headers["Cache-Control"]
        for bad in ("/assets/..%2Fpage.py", "/assets/.hidden.js", "/assets/nope.js", "/assets/page.py",
                    "/assets/%00.js"):
            async with http.get(server + bad) as resp:
                assert resp.status == 404, bad


async def test_a_browsers_unknown_url_gets_the_page_with_a_404(server: str, built_page: Path
                                                               ) -> None:
    html = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}  # what a browser sends
    async with aiohttp.ClientSession() as http:
        async with http.get(server + "/") as resp:
            shell = await resp.text()
        async with http.get(server + "/no/such/page", headers=html) as resp:
            assert resp.status == 404 and resp.content_type == "text/html"
            assert await resp.text() == shell  # the app says "Page not found" (test_page_states)
            assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
        # Not a browser, not a page path, or not a read: no page.
        for method, path, headers in (("GET", "/no/such/page", {"Accept": "application/json"}),
                                      ("GET", "/api/v1/nope", html),
                                      ("POST", "/no/such/page", html)):
            async with http.request(method, server + path, headers=headers) as resp:
                assert resp.status in (404, 405) and resp.content_type != "text/html", path


async def test_an_unbuilt_page_says_how_to_build_it(tmp_path: Path) -> None:
    async with serving(tmp_path) as server, aiohttp.ClientSession() as http, \
            http.get(server + "/") as resp:  # an empty build folder
        assert resp.status == 200
        assert "has not been built" in await resp.text()
