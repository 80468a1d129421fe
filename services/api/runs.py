"""Reading a run back out of Redis for the status, logs and SSE endpoints."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from aiohttp import web

from helios.dag.model import Dag
from helios.definitions import is_run_id
from helios.instances import parse_instance, run_entries
from helios.runs_view import RecordError, read_run, run_exists
from helios.submissions import read_submission
from services.api.context import ctx
from services.api.problems import Problem

log = logging.getLogger(__name__)


def check_dag_id(dag_id: str) -> str:
    if not is_run_id(dag_id):
        raise Problem(404, "Not Found", f"no run {dag_id!r} (run ids are 32 hex characters)")
    return dag_id


async def load_dag(request: web.Request, dag_id: str) -> Dag:
    """The run's definition, or a 404."""
    c = ctx(request)
    dag = await c.definitions.get(check_dag_id(dag_id))
    # A definition never changes, so it is cached; the run may be gone since (retention).
    if dag is None or not await run_exists(c.redis, dag_id):
        raise Problem(404, "Not Found", f"no run {dag_id!r}")
    return dag


async def run_status(request: web.Request, dag_id: str) -> dict[str, Any]:
    dag = await load_dag(request, dag_id)
    try:
        # Every task and exit handler, each forEach task followed by its instances.
        names = await run_entries(ctx(request).redis, dag_id, dag)
        run = await read_run(ctx(request).redis, dag_id, names)
    except RecordError as exc:
        log.error("unreadable run record: %s", exc, extra={"dagId": dag_id})
        raise Problem(500, "Internal Server Error", f"run {dag_id} has an unreadable record"
                      ) from None
    if run is None:  # deleted between the two reads
        raise Problem(404, "Not Found", f"no run {dag_id!r}")
    tasks = []
    exits = {t.name for t in dag.on_exit}
    counts = Counter(i[0] for n in names if (i := parse_instance(n)))
    for name in names:
        record = run.tasks[name]
        d = record.detail
        inst = parse_instance(name)
        task = dag.task(inst[0] if inst else name)
        tasks.append({
            "name": name,
            **({"mapOf": inst[0], "index": inst[1]} if inst else {}),
            **({"instances": counts.get(name, 0)} if task.for_each is not None and not inst
               else {}),
            **({"onExit": True} if name in exits else {}),
            "result": d.result,
            "state": record.state.value,
            "attempts": record.attempts,
            "lostAttempts": d.lost_attempts,
            "dependsOn": task.dependencies,
            "node": d.node,
            "exitCode": d.exit_code,
            "reason": d.reason,
            "message": d.message,
            "memoized": d.memoized,
            "memoReason": d.memo_reason,
            "timings": d.timings.model_dump(by_alias=True) if d.timings else {},
            "cache": d.cache.model_dump(by_alias=True) if d.cache else {},
        })
    return {
        "dagId": dag_id,
        "dagName": dag.dag_name,
        "status": run.state.value,
        "useCache": run.use_cache,
        "generation": run.generation,
        "submittedAt": run.submitted_at,
        "startedAt": run.started_at,
        "endedAt": run.ended_at,
        "durationMs": run.duration_ms,
        "tasks": tasks,
        # params, logicalTime, template {name, version}, resubmitOf (helios.submissions)
        **(origin.summary() if (origin := await read_submission(ctx(request).redis, dag_id))
           else {"params": {}, "logicalTime": None}),
    }
