"""The aiohttp application: routes, middleware, and the shutdown order."""

from __future__ import annotations

from aiohttp import web

from helios.health import Health
from services.api import dags, events, listing, page, schedules, system, templates, triggers
from services.api.auth import auth_middleware
from services.api.context import CTX, ApiContext
from services.api.openapi import openapi_document
from services.api.problems import problems_middleware


async def openapi(_: web.Request) -> web.Response:
    return web.json_response(openapi_document())


def make_app(context: ApiContext, health: Health) -> web.Application:
    # Auth inside problems: a refused request is answered before any handler runs;
    # building it raises (the API does not start) when no tokens are configured.
    app = web.Application(middlewares=[page.browser_not_found(), problems_middleware,
                                       auth_middleware(context.settings.auth)],
                          client_max_size=2 * 1024 * 1024)
    app[CTX] = context
    app.add_routes(health.routes())
    app.add_routes(schedules.routes() + triggers.routes())  # schedules, backfills, triggers
    app.add_routes(page.routes())  # the web page (built from web/)
    app.add_routes([
        web.get("/api/v1/openapi.json", openapi),
        web.post("/api/v1/dags", dags.submit),
        web.get("/api/v1/dags", listing.list_runs),
        web.get("/api/v1/dag-names", listing.dag_names),
        web.get("/api/v1/dags/{dag_id}", dags.status),
        web.get("/api/v1/dags/{dag_id}/events", events.events),
        web.get("/api/v1/dags/{dag_id}/tasks/{task}/logs", dags.logs),
        web.post("/api/v1/dags/{dag_id}/cancel", dags.cancel),
        web.post("/api/v1/dags/{dag_id}/retry", dags.retry),
        web.post("/api/v1/dags/{dag_id}/resubmit", templates.resubmit),
        web.get("/api/v1/templates", templates.list_templates),
        web.put("/api/v1/templates/{name}", templates.put_template),
        web.get("/api/v1/templates/{name}", templates.get_template),
        web.delete("/api/v1/templates/{name}", templates.delete_template),
        web.post("/api/v1/templates/{name}/runs", templates.run_template),
        web.get("/api/v1/dags/{dag_name}/metrics", system.dag_metrics),
        web.get("/api/v1/system/status", system.system_status),
    ])

    async def end_streams(app: web.Application) -> None:
        # SSE clients are told to go (they resume elsewhere with Last-Event-ID)
        # before the server waits for open connections to finish.
        app[CTX].shutting_down.set()

    app.on_shutdown.append(end_streams)
    return app
