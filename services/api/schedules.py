"""Handlers of schedules (`/api/v1/templates/{name}/schedule`, `/api/v1/schedules`) and
backfills (`/api/v1/templates/{name}/backfills`, `/api/v1/backfills/{id}`).

The records are the api's (`helios.keys`); the firing loop (`services.api.firing`) acts
on them. Handlers only write definitions and requests (create, pause, cancel), never the
loop's progress fields.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from helios.instantiate import rfc3339
from helios.schedules import ids
from helios.schedules.plan import backfill_times, next_times
from helios.schedules.records import (
    MAX_BACKFILL_RUNS,
    MAX_SCHEDULES,
    BackfillBody,
    BackfillItem,
    BackfillSpec,
    ScheduleBody,
    ScheduleRecord,
    ScheduleState,
    backfill_view,
)
from services.api.context import ctx
from services.api.firing import store
from services.api.firing.bodies import (
    check_run_params,
    id_of,
    json_body,
    name_of,
    no_body,
    template_of,
    validate,
)
from services.api.firing.loops import FIRING
from services.api.parsing import PARSER
from services.api.problems import Problem
from services.api.queries import int_query

MAX_ACTIVE_BACKFILLS = 100


def _poke(request: web.Request) -> None:
    f = request.app.get(FIRING)
    if f is not None:
        f.changed.set()


def _epoch(at: float | None) -> str | None:
    return None if at is None else rfc3339(datetime.fromtimestamp(at, UTC))


def schedule_view(record: ScheduleRecord, state: ScheduleState, count: int) -> dict[str, Any]:
    body = record.body
    now = datetime.now(UTC)
    upcoming = next_times(body.spec(), datetime.fromtimestamp(state.cursor, UTC), now, count)
    return {
        "template": record.template,
        **body.model_dump(mode="json", by_alias=True),
        "createdAt": record.created_at, "updatedAt": record.updated_at,
        "state": {"cursor": _epoch(state.cursor), "lastRunId": state.last_run_id,
                  "lastTime": _epoch(state.last_time), "fired": state.fired,
                  "skipped": state.skipped, "lastError": state.last_error},
        "nextFireTimes": [rfc3339(t) for t in upcoming],
    }


async def _view(request: web.Request, record: ScheduleRecord) -> dict[str, Any]:
    state = await store.get_state(ctx(request).redis, record.template)
    return schedule_view(record, state, int_query(request, "next", 5, 0, 100))


async def put_schedule(request: web.Request) -> web.Response:
    c = ctx(request)
    name = name_of(request)
    stored = await template_of(c, name)  # a 404 before any 400: the name is the resource
    body = validate(ScheduleBody, await json_body(request))
    await check_run_params(request.app[PARSER], stored, body.params)
    existing = await store.get_schedule(c.redis, name)
    if existing is None and await store.count_schedules(c.redis) >= MAX_SCHEDULES:
        raise Problem(409, "Conflict", f"there are {MAX_SCHEDULES} schedules already: delete some")
    now = time.time()
    record = ScheduleRecord(template=name, body=body,
                            created_at=existing.created_at if existing else now, updated_at=now)
    # A new or changed schedule starts from now: its past times are a backfill's job.
    await store.put_schedule(c.redis, record, reset_cursor=now)
    _poke(request)
    return web.json_response(await _view(request, record), status=200 if existing else 201)


async def _existing(request: web.Request) -> ScheduleRecord:
    name = name_of(request)
    record = await store.get_schedule(ctx(request).redis, name)
    if record is None:
        raise Problem(404, "Not Found", f"stored DAG {name!r} has no schedule")
    return record


async def get_schedule(request: web.Request) -> web.Response:
    return web.json_response(await _view(request, await _existing(request)))


async def delete_schedule(request: web.Request) -> web.Response:
    name = name_of(request)
    if not await store.delete_schedule(ctx(request).redis, name):
        raise Problem(404, "Not Found", f"stored DAG {name!r} has no schedule")
    return web.Response(status=204)


async def _set_paused(request: web.Request, paused: bool) -> web.Response:
    c = ctx(request)
    record = await _existing(request)
    await no_body(request)
    changed = record.body.paused != paused
    if changed:
        body = record.body.model_copy(update={"paused": paused})
        record = record.model_copy(update={"body": body, "updated_at": time.time()})
        # Resuming starts from now: the times of the pause are not caught up.
        await store.put_schedule(c.redis, record, reset_cursor=None if paused else time.time())
        _poke(request)
    return web.json_response(await _view(request, record))


async def pause(request: web.Request) -> web.Response:
    return await _set_paused(request, True)


async def resume(request: web.Request) -> web.Response:
    return await _set_paused(request, False)


async def list_schedules(request: web.Request) -> web.Response:
    c = ctx(request)
    count = int_query(request, "next", 3, 0, 100)
    records = await store.all_schedules(c.redis)
    states = await store.get_states(c.redis, [r.template for r in records])
    return web.json_response({"schedules": [
        schedule_view(record, state, count) for record, state in zip(records, states, strict=True)]})


# -- backfills ----------------------------------------------------------------------

async def create_backfill(request: web.Request) -> web.Response:
    c = ctx(request)
    name = name_of(request)
    stored = await template_of(c, name)
    body = validate(BackfillBody, await json_body(request))
    if body.cron is not None:
        cron_expr, zone = body.cron, body.timezone or "UTC"
    else:
        schedule = await store.get_schedule(c.redis, name)
        if schedule is None:
            raise Problem(400, "Bad Request", f"stored DAG {name!r} has no schedule: give "
                          "'cron' (and 'timezone') for the times to run",
                          errors=[{"field": "cron", "reason": "required without a schedule"}])
        cron_expr, zone = schedule.body.cron, body.timezone or schedule.body.timezone
    probe = ScheduleBody(cron=cron_expr, timezone=zone)
    times = backfill_times(probe.parsed(), body.start, body.end, MAX_BACKFILL_RUNS)
    if not times:
        raise Problem(400, "Bad Request", "no scheduled time between 'from' and 'to'")
    if len(times) > MAX_BACKFILL_RUNS:
        raise Problem(400, "Bad Request", f"more than {MAX_BACKFILL_RUNS} times between "
                      "'from' and 'to': split the range")
    await check_run_params(request.app[PARSER], stored, body.params)
    if await store.count_active_backfills(c.redis) >= MAX_ACTIVE_BACKFILLS:
        raise Problem(409, "Conflict", f"{MAX_ACTIVE_BACKFILLS} backfills are running: wait "
                      "for one to end, or cancel one")
    backfill_id = uuid.uuid4().hex
    spec = BackfillSpec(id=backfill_id, template=name, body=body, cron=cron_expr, timezone=zone,
                        created_at=time.time())
    items = [BackfillItem(time=t, run_id=ids.backfill_rerun(backfill_id, name, t) if body.rerun
                          else ids.scheduled(name, t)) for t in times]
    await store.create_backfill(c.redis, spec, items)
    _poke(request)
    return web.json_response(backfill_view(spec, items, "RUNNING", None), status=201,
                             headers={"Location": f"/api/v1/backfills/{backfill_id}"})


async def _backfill(request: web.Request) -> store.StoredBackfill:
    backfill_id = id_of(request)
    found = await store.get_backfill(ctx(request).redis, backfill_id)
    if found is None:
        raise Problem(404, "Not Found", f"no backfill {backfill_id}")
    return found


async def get_backfill(request: web.Request) -> web.Response:
    b = await _backfill(request)
    return web.json_response(backfill_view(b.spec, b.items, b.state, b.ended_at))


async def cancel_backfill(request: web.Request) -> web.Response:
    b = await _backfill(request)
    await no_body(request)
    if b.state in ("SUCCEEDED", "FAILED", "CANCELLED"):
        raise Problem(409, "Conflict", f"backfill {b.spec.id} already ended ({b.state})")
    await store.request_cancel(ctx(request).redis, b.spec.id)
    _poke(request)
    return web.json_response({"id": b.spec.id, "state": "CANCELLING"}, status=202)


async def list_backfills(request: web.Request) -> web.Response:
    c = ctx(request)
    limit = int_query(request, "limit", 20, 1, 100)
    out = []
    for b in await store.get_backfills(c.redis, await store.recent_backfills(c.redis, limit)):
        if b is not None:
            view = backfill_view(b.spec, b.items, b.state, b.ended_at)
            view.pop("runs")
            out.append(view)
    return web.json_response({"backfills": out})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/schedules", list_schedules),
        web.put("/api/v1/templates/{name}/schedule", put_schedule),
        web.get("/api/v1/templates/{name}/schedule", get_schedule),
        web.delete("/api/v1/templates/{name}/schedule", delete_schedule),
        web.post("/api/v1/templates/{name}/schedule/pause", pause),
        web.post("/api/v1/templates/{name}/schedule/resume", resume),
        web.post("/api/v1/templates/{name}/backfills", create_backfill),
        web.get("/api/v1/backfills", list_backfills),
        web.get("/api/v1/backfills/{id}", get_backfill),
        web.post("/api/v1/backfills/{id}/cancel", cancel_backfill),
    ]
