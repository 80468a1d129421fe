"""Handlers of `/api/v1/templates...` (stored DAGs) and of resubmitting a run.

A stored DAG is a DAG document kept by name, one immutable version per change
(`helios.templates_store`). Starting one, resubmitting a run, and `POST /dags` all go
through `launch`, so each run records what it came from (`helios.submissions`).
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator

from helios import keys, templates_store
from helios.dag.model import DNS1123_LABEL, json_int
from helios.dag.parse import DagError
from helios.submissions import read_submission
from services.api.context import ctx
from services.api.dags import read_body, read_document
from services.api.firing.bodies import name_of
from services.api.launch import busy, invalid, launch
from services.api.parsing import PARSER, ParserBusy
from services.api.problems import Problem
from services.api.runs import check_dag_id, load_dag

_NAME = re.compile(DNS1123_LABEL)
MAX_RUN_BODY = 512 * 1024


class RunRequest(BaseModel):
    """`POST /templates/{name}/runs` and `POST /dags/{dagId}/resubmit` bodies."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)

    params: dict[str, JsonValue] = Field(default_factory=dict, max_length=100)
    use_cache: bool | None = Field(default=None, alias="useCache")
    version: json_int(1, 2**53) | None = None  # type: ignore[valid-type]

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        # Absent means the default; an explicit null is not a value the schema allows.
        if isinstance(data, dict):
            for key in ("useCache", "use_cache", "version"):
                if key in data and data[key] is None:
                    raise ValueError(f"{key} must not be null (leave it out for the default)")
        return data


async def _run_request(request: web.Request, *, allow_version: bool) -> RunRequest:
    """The optional JSON body; an absent or empty body means every default."""
    if not request.body_exists:
        return RunRequest()
    if request.content_type not in ("application/json", ""):
        raise Problem(415, "Unsupported Media Type", "send the body as application/json")
    raw = await read_body(request, MAX_RUN_BODY)
    if len(raw) > MAX_RUN_BODY:
        raise Problem(413, "Payload Too Large", f"the body is larger than {MAX_RUN_BODY} bytes")
    if not raw.strip():
        return RunRequest()
    try:
        body = RunRequest.model_validate(orjson.loads(raw))
    except orjson.JSONDecodeError as exc:
        raise Problem(400, "Bad Request", f"malformed JSON: {exc}"[:300]) from None
    except ValidationError as exc:
        errors = [{"field": ".".join(str(p) for p in e["loc"]), "reason": e["msg"]}
                  for e in exc.errors(include_url=False)][:20]
        raise Problem(400, "Bad Request", "invalid request body", errors=errors) from None
    if body.version is not None and not allow_version:
        raise Problem(400, "Bad Request", "a resubmitted run keeps its definition: no version",
                      errors=[{"field": "version", "reason": "not allowed here"}])
    return body


async def put_template(request: web.Request) -> web.Response:
    c = ctx(request)
    name = name_of(request)
    body, media = await read_document(request)
    try:
        parsed = await request.app[PARSER].parse(body, media)
    except DagError as exc:
        raise invalid(exc) from None
    except ParserBusy:
        raise busy() from None
    try:
        version, created = await templates_store.put_version(c.redis, name, parsed.document,
                                                             parsed.dag_name)
    except templates_store.TooManyTemplates as exc:
        raise Problem(409, "Conflict", str(exc)) from None
    return web.json_response(
        {"name": name, "version": version, "created": created, "dagName": parsed.dag_name},
        status=201 if created else 200,
        headers={"Location": f"/api/v1/templates/{name}?version={version}"})


def _version_query(request: web.Request) -> int | None:
    raw = request.query.get("version")
    if raw is None:
        return None
    if not re.fullmatch(r"[1-9][0-9]{0,15}", raw):
        raise Problem(400, "Bad Request", "query parameter 'version' must be a positive integer")
    return int(raw)


async def get_template(request: web.Request) -> web.Response:
    c = ctx(request)
    name = name_of(request)
    info = await templates_store.get_info(c.redis, name)
    version = _version_query(request)
    found = await templates_store.get_version(c.redis, name, version) if info else None
    if info is None or found is None:
        what = f"version {version} of " if info and version else ""
        raise Problem(404, "Not Found", f"no {what}stored DAG {name!r}")
    return web.json_response({
        **info.as_json(), "version": found.version, "params": found.params,
        "document": orjson.loads(found.document), "digest": found.digest,
        "versions": [{"version": v, "createdAt": at} for v, at in info.versions.items()],
    })


async def list_templates(request: web.Request) -> web.Response:
    c = ctx(request)
    after = request.query.get("after")
    if after is not None and (len(after) > 63 or _NAME.fullmatch(after) is None):
        raise Problem(400, "Bad Request", "query parameter 'after' must be a stored DAG name")
    raw_limit = request.query.get("limit", "100")
    if not re.fullmatch(r"[0-9]{1,4}", raw_limit) or not 1 <= int(raw_limit) <= 1000:
        raise Problem(400, "Bad Request", "query parameter 'limit' must be in 1..1000")
    limit = int(raw_limit)
    items = await templates_store.list_templates(c.redis, after, limit)
    body: dict[str, Any] = {"templates": [i.as_json() for i in items]}
    if len(items) == limit:
        body["next"] = items[-1].name
    return web.json_response(body)


async def delete_template(request: web.Request) -> web.Response:
    name = name_of(request)
    if not await templates_store.delete(ctx(request).redis, name):
        raise Problem(404, "Not Found", f"no stored DAG {name!r}")
    return web.Response(status=204)


async def run_template(request: web.Request) -> web.Response:
    c = ctx(request)
    name = name_of(request)
    ask = await _run_request(request, allow_version=True)
    found = await templates_store.get_version(c.redis, name, ask.version)
    if found is None:
        what = f"version {ask.version} of " if ask.version else ""
        raise Problem(404, "Not Found", f"no {what}stored DAG {name!r}")
    try:
        result = await launch(c, request.app[PARSER], found.document, use_cache=ask.use_cache,
                              params=ask.params, template=(name, found.version))
    except DagError as exc:
        raise invalid(exc) from None
    except ParserBusy:
        raise busy() from None
    return web.json_response(
        {**result.as_json(), "template": {"name": name, "version": found.version}},
        status=201, headers={"Location": f"/api/v1/dags/{result.dag_id}"})


async def resubmit(request: web.Request) -> web.Response:
    """A new run of the same definition and parameters (`params` in the body override
    some); with memoization on, only the tasks whose inputs changed run."""
    c = ctx(request)
    dag_id = check_dag_id(request.match_info["dag_id"])
    await load_dag(request, dag_id)  # 404 for an unknown or deleted run
    ask = await _run_request(request, allow_version=False)
    record = await read_submission(c.redis, dag_id)
    source = record.source if record and record.source else None
    if source is None:  # not rendered: the definition is the document as submitted
        stored = await c.redis.get(keys.definition(dag_id))
        if stored is None:
            raise Problem(404, "Not Found", f"no run {dag_id!r}")
        source = stored.encode() if isinstance(stored, str) else stored
    use_cache = ask.use_cache
    if use_cache is None:  # as the run was started
        use_cache = (await c.redis.get(keys.use_cache(dag_id))) != "false"
    params = {**(record.params if record else {}), **ask.params}
    template = None
    if record and record.template and record.template_version:
        template = (record.template, record.template_version)
    try:
        result = await launch(c, request.app[PARSER], source, use_cache=use_cache,
                              params=params, logical_time=record.logical_time if record else None,
                              template=template, resubmit_of=dag_id)
    except DagError as exc:
        raise invalid(exc) from None
    except ParserBusy:
        raise busy() from None
    return web.json_response({**result.as_json(), "resubmitOf": dag_id}, status=201,
                             headers={"Location": f"/api/v1/dags/{result.dag_id}"})
