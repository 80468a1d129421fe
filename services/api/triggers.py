"""Handlers of triggers: the webhook (`POST /api/v1/templates/{name}/trigger`) and the
stored triggers (`/api/v1/triggers/{trigger}`: new objects under an S3 prefix, or the
success of another stored DAG's run).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from helios.dag.parse import DagError
from helios.schedules import ids
from helios.schedules.records import (
    MAX_TRIGGERS,
    TRIGGER_FIELDS,
    ObjectSource,
    SuccessSource,
    TriggerBody,
    TriggerRecord,
)
from services.api.context import ctx
from services.api.firing import store
from services.api.firing.bodies import declared_names, json_body, name_of, template_of, validate
from services.api.firing.loops import FIRING
from services.api.firing.params import check_params
from services.api.launch import busy, invalid, launch
from services.api.parsing import PARSER, ParserBusy
from services.api.problems import Problem

MAX_IDEMPOTENCY_KEY = 200


async def webhook(request: web.Request) -> web.Response:
    """The JSON body is the run's parameters. With an `Idempotency-Key` header, the same
    key starts one run (a retried delivery answers 200 with the same run)."""
    c = ctx(request)
    name = name_of(request)
    stored = await template_of(c, name)
    raw = await json_body(request, empty_ok=True)
    params = orjson.loads(raw) if raw is not None else {}
    if not isinstance(params, dict):
        raise Problem(400, "Bad Request", "the body must be a JSON object of parameters")
    key = request.headers.get("Idempotency-Key")
    run_id = None
    if key is not None:
        if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable() or not key.isascii():
            raise Problem(400, "Bad Request", f"Idempotency-Key: 1..{MAX_IDEMPOTENCY_KEY} "
                          "printable ASCII characters")
        run_id = ids.webhook(name, key)
    try:
        result = await launch(c, request.app[PARSER], stored.document, media=stored.media,
                              run_id=run_id, params=params, template=(name, stored.version),
                              extra={"trigger": "webhook"})
    except DagError as exc:
        raise invalid(exc) from None
    except ParserBusy:
        raise busy() from None
    return web.json_response(result.as_json(), status=201 if result.created else 200,
                             headers={"Location": f"/api/v1/dags/{result.dag_id}"})


def success_edges(records: list[TriggerRecord], but: str) -> dict[str, set[str]]:
    """Stored DAG -> the stored DAGs its successful runs start (trigger `but` left out:
    it is the one being replaced)."""
    edges: dict[str, set[str]] = {}
    for record in records:
        if record.name != but and isinstance(record.body.source, SuccessSource):
            edges.setdefault(record.body.source.template, set()).add(record.body.template)
    return edges


def reaches(edges: dict[str, set[str]], start: str, goal: str) -> bool:
    """Whether `goal` is `start` or is started, directly or not, by `start`'s successes."""
    seen, todo = {start}, [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        for nxt in edges.get(node, ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return False


def trigger_view(record: TriggerRecord) -> dict[str, Any]:
    return {"name": record.name, **record.body.model_dump(mode="json", by_alias=True,
                                                           exclude_none=True),
            "createdAt": record.created_at}


async def put_trigger(request: web.Request) -> web.Response:
    c = ctx(request)
    name = name_of(request, "trigger", "trigger")
    body = validate(TriggerBody, await json_body(request))
    stored = await template_of(c, body.template)
    errors = [{"field": p.split(":", 1)[0], "reason": p.split(":", 1)[1].strip()}
              for p in check_params(body.params, TRIGGER_FIELDS[body.source.kind])]
    declared = declared_names(stored)
    errors += [{"field": f"params.{p}", "reason": f"{body.template!r} declares no such "
                f"parameter (declared: {', '.join(sorted(declared)) or 'none'})"}
               for p in body.params if p not in declared]
    source = body.source
    if isinstance(source, ObjectSource):
        bucket = source.bucket or c.settings.s3.bucket
        f = request.app.get(FIRING)
        allowed = f.allowed_buckets() if f else {c.settings.s3.bucket}
        if bucket not in allowed:
            errors.append({"field": "source.bucket",
                           "reason": "not a bucket triggers may watch (HELIOS_FIRING_BUCKETS)"})
    elif source.template == body.template:
        errors.append({"field": "source.template",
                       "reason": "a stored DAG cannot trigger itself"})
    elif reaches(success_edges(await store.all_triggers(c.redis), but=name),
                 body.template, source.template):
        # A -> B -> A would start runs for ever, each success firing the next.
        errors.append({"field": "source.template", "reason": (
            f"{body.template!r} already leads to {source.template!r} through runSucceeded "
            "triggers: this one would close a loop")})
    if errors:
        raise Problem(400, "Bad Request", "invalid trigger: " + "; ".join(
            f"{e['field']}: {e['reason']}" for e in errors[:5]), errors=errors)
    existing = await store.get_trigger(c.redis, name)
    if existing is None and await store.count_triggers(c.redis) >= MAX_TRIGGERS:
        raise Problem(409, "Conflict", f"there are {MAX_TRIGGERS} triggers already: delete some")
    if existing is not None and existing.body.source != body.source:
        raise Problem(409, "Conflict", f"trigger {name!r} watches something else: delete it "
                      "first (its record of what it fired goes with it)")
    record = TriggerRecord(name=name, body=body,
                           created_at=existing.created_at if existing else time.time())
    await store.put_trigger(c.redis, record)
    f = request.app.get(FIRING)
    if f is not None:
        f.changed.set()
    return web.json_response(trigger_view(record), status=200 if existing else 201)


async def _trigger(request: web.Request) -> TriggerRecord:
    name = name_of(request, "trigger", "trigger")
    record = await store.get_trigger(ctx(request).redis, name)
    if record is None:
        raise Problem(404, "Not Found", f"no trigger {name!r}")
    return record


async def get_trigger(request: web.Request) -> web.Response:
    return web.json_response(trigger_view(await _trigger(request)))


async def delete_trigger(request: web.Request) -> web.Response:
    name = name_of(request, "trigger", "trigger")
    if not await store.delete_trigger(ctx(request).redis, name):
        raise Problem(404, "Not Found", f"no trigger {name!r}")
    return web.Response(status=204)


async def list_triggers(request: web.Request) -> web.Response:
    records = await store.all_triggers(ctx(request).redis)
    return web.json_response({"triggers": [trigger_view(r) for r in records]})


def routes() -> list[web.RouteDef]:
    return [
        web.post("/api/v1/templates/{name}/trigger", webhook),
        web.get("/api/v1/triggers", list_triggers),
        web.put("/api/v1/triggers/{trigger}", put_trigger),
        web.get("/api/v1/triggers/{trigger}", get_trigger),
        web.delete("/api/v1/triggers/{trigger}", delete_trigger),
    ]
