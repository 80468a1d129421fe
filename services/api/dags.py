"""Handlers of `/api/v1/dags...`: submit, status, logs, cancel, retry."""

from __future__ import annotations

import asyncio
import logging
import time
import zlib

from aiohttp import web

from helios import subjects, tasklogs
from helios.bus import publish
from helios.dag.parse import MAX_DOCUMENT_BYTES, DagError
from helios.instances import parse_instance
from helios.messages import CancelRequest, RetryRequest
from helios.runs_view import read_head
from helios.states import RunState
from services.api.context import ctx
from services.api.launch import busy, invalid, launch, param_query
from services.api.parsing import PARSER, ParserBusy
from services.api.problems import Problem
from services.api.queries import int_query
from services.api.runs import check_dag_id, load_dag, run_status

log = logging.getLogger(__name__)

# A body that stops arriving for BODY_IDLE_S, or is still arriving after BODY_DEADLINE_S
# (1 MiB at 50 kB/s), is cut: stalled uploads must not hold connections and tasks.
BODY_IDLE_S = 5.0
BODY_DEADLINE_S = 20.0
JSON_TYPES = ("application/json", "")
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


def _decompress(data: bytes, encoding: str) -> bytearray:
    """gzip/deflate, stopping one byte past the document limit (never a zip bomb)."""
    # 47 = auto-detect a gzip or zlib header; raw deflate (-15) is what some clients send.
    for wbits in ((47,) if encoding == "gzip" else (47, -15)):
        engine = zlib.decompressobj(wbits)
        try:
            out = engine.decompress(data, MAX_DOCUMENT_BYTES + 1)
        except zlib.error:
            continue
        if len(out) > MAX_DOCUMENT_BYTES or engine.eof:
            return bytearray(out)
    raise Problem(400, "Bad Request", f"the body is not valid {encoding} data")


async def read_body(request: web.Request, limit: int = MAX_DOCUMENT_BYTES,
                    deadline_s: float = BODY_DEADLINE_S) -> bytearray:
    """The body, one byte past `limit` at most (the caller words the size error),
    bounded in time: a client that stalls for BODY_IDLE_S, or trickles for longer than
    `deadline_s`, gets a 408 and its connection is closed. Every route reads its body here."""
    body = bytearray()
    try:
        async with asyncio.timeout(deadline_s):
            while len(body) <= limit:
                chunk = await asyncio.wait_for(
                    request.content.read(limit + 1 - len(body)), BODY_IDLE_S)
                if not chunk:
                    break
                body += chunk
    except TimeoutError:
        raise Problem(408, "Request Timeout",
                      f"the request body did not arrive in time ({len(body)} bytes read)",
                      headers={"Connection": "close"}) from None
    except web.RequestPayloadError as exc:
        raise Problem(400, "Bad Request", f"unreadable request body: {exc}"[:300]) from None
    return body


def _bool_query(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    # Exactly the OpenAPI boolean's two spellings: a client must not get a surprise.
    if raw in ("true", "false"):
        return raw == "true"
    raise Problem(400, "Bad Request", f"query parameter {name!r} must be true or false")


async def read_document(request: web.Request) -> tuple[bytes, str]:
    """A DAG document body (JSON or YAML, maybe compressed) and its media type."""
    media = request.content_type if request.body_exists else ""
    if media not in JSON_TYPES + YAML_TYPES:
        raise Problem(415, "Unsupported Media Type",
                      "send the DAG as application/json or application/yaml")
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", "deflate"):
        raise Problem(415, "Unsupported Media Type",
                      f"Content-Encoding {encoding[:40]!r} is not supported (gzip, deflate)")
    body = await read_body(request)
    if encoding != "identity":
        body = _decompress(bytes(body), encoding)
    return bytes(body), media or "application/json"


async def submit(request: web.Request) -> web.Response:
    c = ctx(request)
    override = _bool_query(request, "useCache")
    values = param_query(request)
    body, media = await read_document(request)
    try:
        # Parsed and rendered in a worker process, stored, then published (launch.py).
        result = await launch(c, request.app[PARSER], body, media=media, use_cache=override,
                              params=values)
    except DagError as exc:
        raise invalid(exc) from None
    except ParserBusy:
        raise busy() from None
    return web.json_response(result.as_json(), status=201,
                             headers={"Location": f"/api/v1/dags/{result.dag_id}"})


async def status(request: web.Request) -> web.Response:
    return web.json_response(await run_status(request, request.match_info["dag_id"]))


async def logs(request: web.Request) -> web.StreamResponse:
    c = ctx(request)
    dag_id, task = request.match_info["dag_id"], request.match_info["task"]
    dag = await load_dag(request, dag_id)
    inst = parse_instance(task)  # a forEach instance `task[i]` has logs of its own
    if task not in dag.by_name and (inst is None or dag.by_name.get(inst[0]) is None
                                    or dag.task(inst[0]).for_each is None):
        raise Problem(404, "Not Found", f"run {dag_id} has no task {task!r}")
    offset = int_query(request, "offset", 0, 0, 10**9)
    limit = int_query(request, "limit", 10_000, 1, 100_000)
    lines = await tasklogs.read_lines(c.redis, dag_id, task, offset, offset + limit - 1)
    if "text/plain" in request.headers.get("Accept", ""):
        return web.Response(text="".join(f"{line}\n" for line in lines))
    # Attempts cut at HELIOS_LOG_MAX_BYTES: their lines end with a truncation line, and
    # `truncated` says which attempts and where the whole log is.
    cuts = await tasklogs.read_cuts(c.redis, dag_id, task)
    return web.json_response({"dagId": dag_id, "task": task, "offset": offset,
                              "next": offset + len(lines), "lines": lines,
                              "truncated": bool(cuts), "cuts": [cut.as_json() for cut in cuts]})


async def cancel(request: web.Request) -> web.Response:
    c = ctx(request)
    dag_id = check_dag_id(request.match_info["dag_id"])
    await load_dag(request, dag_id)
    head = await read_head(c.redis, dag_id)
    if head is not None and head.state.terminal:
        raise Problem(409, "Conflict", f"run {dag_id} already ended ({head.state.value})")
    # One cancel per generation: a retried run can be cancelled again.
    await publish(c.js, subjects.cancel(dag_id), CancelRequest(
        dag_id=dag_id, requested_at=time.time(), generation=head.generation if head else 0,
    ), timeout=c.settings.nats.request_timeout_s)
    return web.json_response({"dagId": dag_id, "status": "CANCELLING"}, status=202)


async def retry(request: web.Request) -> web.Response:
    c = ctx(request)
    dag_id = check_dag_id(request.match_info["dag_id"])
    await load_dag(request, dag_id)
    head = await read_head(c.redis, dag_id)
    if head is None or head.state is RunState.RUNNING:
        raise Problem(409, "Conflict", f"run {dag_id} is still running")
    if head.state is RunState.SUCCEEDED:
        raise Problem(409, "Conflict", f"run {dag_id} succeeded; nothing to retry")
    # One retry per generation: a double-clicked retry is deduplicated by JetStream.
    await publish(c.js, subjects.retry(dag_id), RetryRequest(
        dag_id=dag_id, request_id=f"g{head.generation}", requested_at=time.time(),
    ), timeout=c.settings.nats.request_timeout_s)
    return web.json_response({"dagId": dag_id, "status": "RETRYING"}, status=202)
