"""A one-page UI: submit a DAG, watch the live feed. Static HTML, no build step."""

from __future__ import annotations

from importlib import resources

from aiohttp import web


async def index(_: web.Request) -> web.Response:
    html = resources.files("services.api").joinpath("index.html").read_text()
    return web.Response(text=html, content_type="text/html")
