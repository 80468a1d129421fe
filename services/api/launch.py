"""The one way a run starts: render, store, publish (and undo the store if publishing fails).

Every start goes through `launch`: `POST /dags`, a stored DAG's runs, resubmit, and the
schedules, backfills and triggers. It parses and renders the document in a parser worker
(`helios.instantiate`: parameters checked, references replaced), stores the definition,
`useCache`, the run hash's submission part, the runs-list entry and the submission record
(`helios.submissions`) in one MULTI, then publishes the `Submission`.

Idempotent for a given `run_id` (schedules derive it from (schedule, time)): when that
run is stored already, nothing is stored again and the existing run is returned with
`created=False`; its `Submission` is published again (JetStream drops the duplicate, the
scheduler treats a redelivered submission as a no-op), which also completes a launch
that crashed between storing and publishing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import nats.errors
import orjson
from aiohttp import web
from redis.exceptions import WatchError

from helios import keys, runs_index, subjects
from helios.bus import publish
from helios.dag.parse import DagError
from helios.definitions import is_run_id, new_run_id
from helios.instantiate import RunSpec, rfc3339
from helios.messages import Submission
from helios.params import MAX_PARAMS, parse_assignments
from helios.states import RunState
from helios.submissions import SubmissionRecord
from services.api.context import ApiContext
from services.api.parsing import ParserPool
from services.api.problems import Problem

log = logging.getLogger(__name__)

JSON = "application/json"


@dataclass(frozen=True, slots=True)
class LaunchResult:
    dag_id: str
    dag_name: str
    use_cache: bool
    task_count: int
    created: bool  # False: a run with this id existed already (an idempotent repeat)
    params: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The `201` body of every route that starts a run."""
        return {"dagId": self.dag_id, "dagName": self.dag_name,
                "status": RunState.RUNNING.value, "useCache": self.use_cache,
                "taskCount": self.task_count, "params": self.params}


async def launch(c: ApiContext, parser: ParserPool, document: bytes, *, media: str = JSON,
                 use_cache: bool | None = None, run_id: str | None = None,
                 params: Mapping[str, object] | None = None,
                 logical_time: datetime | str | None = None,
                 template: tuple[str, int] | None = None, resubmit_of: str | None = None,
                 extra: Mapping[str, str] | None = None) -> LaunchResult:
    """Start one run of `document` (JSON or YAML bytes, as `POST /dags` takes them).

    `params`: supplied values (strings are read as their type's text form);
    `logical_time`: `{{ run.logicalTime }}` (default: now); `template`: the stored DAG
    and version it came from; `extra`: more string fields for the submission record.
    Raises DagError (a 400: the document or a parameter), ParserBusy, or Problem(503)."""
    if run_id is not None and not is_run_id(run_id):
        raise ValueError(f"run id {run_id!r} is not 32 hex characters")
    dag_id = run_id or new_run_id()
    if run_id is not None:
        existing = await _existing(c, dag_id)
        if existing is not None:
            return existing
    now = time.time()
    if logical_time is None:
        logical_time = datetime.fromtimestamp(now, UTC)
    logical = logical_time if isinstance(logical_time, str) else rfc3339(logical_time)
    run = RunSpec(dag_id, logical, dict(params or {}))
    # Parsed and rendered in a worker process, bounded in time: the loop never stalls.
    dag = await parser.parse(document, media, use_cache, run.as_json())
    cache_flag = "true" if dag.use_cache else "false"
    record = SubmissionRecord(
        params=dag.params or {}, source=dag.source, logical_time=logical,
        template=template[0] if template else None,
        template_version=template[1] if template else None,
        resubmit_of=resubmit_of, extra=dict(extra or {}))
    async with c.redis.pipeline(transaction=True) as pipe:
        try:
            # SET NX is not enough inside MULTI (the other writes would still happen):
            # WATCH the definition, so a concurrent launch of the same id makes this fail.
            await pipe.watch(keys.definition(dag_id))
            if await pipe.exists(keys.definition(dag_id)):
                await pipe.reset()
                existing = await _existing(c, dag_id)
                if existing is not None:
                    return existing
                raise Problem(409, "Conflict", f"run {dag_id} is being stored; retry")
            pipe.multi()
            pipe.set(keys.definition(dag_id), dag.document)
            pipe.set(keys.use_cache(dag_id), cache_flag)
            pipe.hset(keys.submission(dag_id), mapping=record.to_hash())  # type: ignore[arg-type]
            pipe.hset(keys.run(dag_id), mapping={
                "dagName": dag.dag_name, "state": RunState.RUNNING.value, "useCache": cache_flag,
                "submittedAt": repr(now), "generation": "0", "taskCount": str(dag.task_count),
            })
            runs_index.index_submitted(pipe, dag_id, dag.dag_name, now)  # listable at once
            await pipe.execute()
        except WatchError:
            existing = await _existing(c, dag_id)
            if existing is not None:
                return existing
            raise Problem(409, "Conflict", f"run {dag_id} is being stored; retry") from None
    # Stored first, published second: the scheduler never sees a run it cannot read.
    # If the publish fails, the stored run is removed again: nothing half-submitted stays.
    submission = Submission(dag_id=dag_id, dag_name=dag.dag_name, use_cache=dag.use_cache,
                            submitted_at=now)
    try:
        await _publish(c, submission)
    except Exception as exc:
        async with c.redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.definition(dag_id), keys.use_cache(dag_id), keys.run(dag_id),
                        keys.submission(dag_id))
            runs_index.unindex(pipe, dag_id, dag.dag_name)
            await pipe.execute()
        log.warning("submission not published: %s", exc, extra={"dagId": dag_id})
        raise Problem(503, "Service Unavailable",
                      "the message bus did not accept the submission; nothing was stored, retry"
                      ) from None
    log.info("run stored and queued", extra={"dagId": dag_id, "dagName": dag.dag_name,
                                              "template": template[0] if template else None})
    return LaunchResult(dag_id, dag.dag_name, dag.use_cache, dag.task_count, True,
                        dag.params or {})


def invalid(exc: DagError) -> Problem:
    """A document or parameter error as the 400 every route answers (errors located)."""
    return Problem(400, exc.title, str(exc), errors=[e.as_dict() for e in exc.errors])


def busy() -> Problem:
    return Problem(503, "Service Unavailable", "every document parser is busy; retry",
                   headers={"Retry-After": "1"})


def param_query(request: web.Request) -> dict[str, str]:
    """Values given as repeated `param=NAME=VALUE` query parameters (the CLI's `-p`)."""
    given = request.query.getall("param", [])
    if len(given) > MAX_PARAMS:
        raise Problem(400, "Bad Request", f"more than {MAX_PARAMS} 'param' query parameters")
    try:
        return parse_assignments(given)
    except ValueError as exc:
        raise Problem(400, "Bad Request", f"query parameter 'param': {exc}") from None


async def _publish(c: ApiContext, submission: Submission) -> None:
    # A timeout may hide a stored message whose ack was lost: publishing again with
    # the same Nats-Msg-Id is safe (deduplicated) and usually settles which it was.
    for last in (False, False, True):
        try:
            await publish(c.js, subjects.submit(submission.dag_id), submission,
                          timeout=c.settings.nats.request_timeout_s)
            return
        except nats.errors.TimeoutError:
            if last:
                raise


async def _existing(c: ApiContext, dag_id: str) -> LaunchResult | None:
    """The stored run with this id, its submission published again; None if none."""
    fields = cast("list[str | None]", await c.redis.hmget(
        keys.run(dag_id), "dagName", "useCache", "submittedAt", "taskCount", "startedAt"))
    name, cache_flag, submitted, count, started = fields
    if name is None or submitted is None:
        return None
    use_cache = cache_flag == "true"
    if started is None:  # perhaps never published: a repeat is harmless, a loss is not
        await _publish(c, Submission(dag_id=dag_id, dag_name=name, use_cache=use_cache,
                                     submitted_at=float(submitted)))
    # The repeat answers what the first answer said, the run's parameter values included.
    stored_params = await c.redis.hget(keys.submission(dag_id), "params")
    params = orjson.loads(stored_params) if stored_params else {}
    return LaunchResult(dag_id, name, use_cache, int(count or 0), False,
                        params if isinstance(params, dict) else {})
