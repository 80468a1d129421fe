"""The web page: the single-page app built from `web/` into `services/api/static/`.

Every page path answers the same `index.html` (the app routes in the browser, so a run's
URL survives a reload); `/assets/*` are the built, content-hashed files. Both are public:
the page must load to ask for a token. Nothing is fetched from elsewhere (air-gapped
clusters): the build bundles every dependency.
"""

from __future__ import annotations

import re
from importlib import resources
from importlib.resources.abc import Traversable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

# Page paths (aiohttp route patterns): services/api/auth.py treats them as public.
PAGE_ROUTES = ("/", "/submit", "/templates", "/runs/{dag_id}", "/dags/{dag_name}")
ASSET_ROUTE = "/assets/{name}"

# Vite writes `name-HASH.ext`: one path segment, no dot-dot, nothing else.
_ASSET = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,200}")
_TYPES = {
    ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png",
    ".woff2": "font/woff2", ".json": "application/json", ".map": "application/json",
    ".ico": "image/x-icon", ".wasm": "application/wasm",
}
# The page may load only what the api serves: no CDN, no inline script.
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'")
_HEADERS = {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer"}

NOT_BUILT = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Helios</title>
</head><body><h1>Helios</h1><p>The web page has not been built. <code>./run.sh dev</code> builds
it (it needs <code>node</code> and <code>npm</code>), or run <code>npm ci &amp;&amp; npm run
build</code> in <code>web/</code>. The API works without it: see
<a href="/api/v1/openapi.json">/api/v1/openapi.json</a>.</p></body></html>"""


def static_root() -> Traversable:
    return resources.files("services.api").joinpath("static")


class Page:
    """The handlers, serving the build in `root` (the package's own by default)."""

    def __init__(self, root: Traversable | None = None):
        self.root = root if root is not None else static_root()

    async def index(self, _: web.Request) -> web.Response:
        page = self.root.joinpath("index.html")
        if not page.is_file():
            # 200, not 5xx: the API is up and says how to build the page.
            return web.Response(text=NOT_BUILT, content_type="text/html",
                                headers={"Cache-Control": "no-store", **_HEADERS})
        # Never cached: it names the current build's hashed assets.
        return web.Response(text=page.read_text(encoding="utf-8"), content_type="text/html",
                            headers={"Cache-Control": "no-cache", **_HEADERS})

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        suffix = name[name.rfind("."):] if "." in name else ""
        if not _ASSET.fullmatch(name) or suffix not in _TYPES:
            raise web.HTTPNotFound(text=f"no asset {name[:80]!r}")
        file = self.root.joinpath("assets", name)
        if not file.is_file():
            raise web.HTTPNotFound(text=f"no asset {name[:80]!r}")
        return web.Response(body=file.read_bytes(), content_type=_TYPES[suffix],
                            headers={"Cache-Control": "public, max-age=31536000, immutable",
                                     "X-Content-Type-Options": "nosniff"})


def browser_not_found(root: Traversable | None = None) -> Middleware:
    """A browser's unknown URL (a typo, an old bookmark) gets the page with status 404: its
    router says "Page not found" and links back. Outermost, before auth: a browser sends
    no token, and the page is public anyway. API paths, other methods and clients that do
    not ask for HTML keep the problem+json 404."""
    page = Page(root)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (request.method in ("GET", "HEAD")
                and isinstance(request.match_info.http_exception, web.HTTPNotFound)
                and not request.path.startswith("/api/")
                and "text/html" in request.headers.get("Accept", "")):
            response = await page.index(request)
            response.set_status(404)
            return response
        return await handler(request)

    return middleware


def routes(root: Traversable | None = None) -> list[web.RouteDef]:
    page = Page(root)
    return [*(web.get(path, page.index) for path in PAGE_ROUTES), web.get(ASSET_ROUTE, page.asset)]
