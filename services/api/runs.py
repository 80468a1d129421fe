"""Reading a run back out of Redis for the status, logs and SSE endpoints."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from helios import keys
from helios.dag.model import Dag
from helios.definitions import is_run_id
from services.api.context import ctx
from services.api.problems import Problem


def check_dag_id(dag_id: str) -> str:
    if not is_run_id(dag_id):
        raise Problem(404, "Not Found", f"no run {dag_id!r} (run ids are 32 hex characters)")
    return dag_id


async def load_dag(request: web.Request, dag_id: str) -> Dag:
    """The run's definition, or a 404."""
    dag = await ctx(request).definitions.get(check_dag_id(dag_id))
    if dag is None:
        raise Problem(404, "Not Found", f"no run {dag_id!r}")
    return dag


def _json(value: str | None) -> Any:
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value


def _num(value: str | None) -> float | None:
    return float(value) if value else None


async def run_status(request: web.Request, dag_id: str) -> dict[str, Any]:
    redis = ctx(request).redis
    dag = await load_dag(request, dag_id)
    names = [t.name for t in dag.tasks]
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.run(dag_id))
        pipe.mget([keys.task_status(dag_id, n) for n in names])
        pipe.mget([keys.task_attempts(dag_id, n) for n in names])
        for n in names:
            pipe.hgetall(keys.task_detail(dag_id, n))
        run, states, attempts, *details = await pipe.execute()
    tasks = []
    for task, state, attempt, detail in zip(dag.tasks, states, attempts, details, strict=True):
        d = {k: _json(v) for k, v in detail.items()}
        tasks.append({
            "name": task.name,
            "state": state or "PENDING",
            "attempts": int(attempt or 0),
            "dependsOn": task.dependencies,
            "node": d.get("node"),
            "exitCode": d.get("exitCode"),
            "reason": d.get("reason"),
            "message": d.get("message"),
            "memoized": bool(d.get("memoized")),
            "memoReason": d.get("memoReason"),
            "timings": d.get("timings") or {},
            "cache": d.get("cache") or {},
        })
    started, ended = _num(run.get("startedAt")), _num(run.get("endedAt"))
    return {
        "dagId": dag_id,
        "dagName": dag.dag_name,
        "status": run.get("state", "RUNNING"),
        "useCache": run.get("useCache", "true") == "true",
        "generation": int(run.get("generation", 0)),
        "submittedAt": _num(run.get("submittedAt")),
        "startedAt": started,
        "endedAt": ended,
        "durationMs": round((ended - started) * 1000) if started and ended else None,
        "tasks": tasks,
    }
