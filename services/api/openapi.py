"""The OpenAPI 3.1 document of `/api/v1`, built from the same pydantic models that
validate requests, so the schema cannot drift from the behaviour."""

from __future__ import annotations

from functools import cache
from typing import Any

from helios import __version__
from helios.dag.model import DNS1123_LABEL, INSTANCE_NAME, Dag
from helios.definitions import RUN_ID_PATTERN
from helios.states import RunState, TaskState
from services.api import listing, templates_openapi
from services.api.auth import document_security
from services.api.firing import openapi as firing_openapi
from services.api.openapi_parts import json_response as _json
from services.api.openapi_parts import problem as _problem

# Every parameter states what the handler accepts, so a schema-driven client never gets
# a surprise 400 (and a schema-invalid value always gets a 4xx).
DAG_ID = {"name": "dagId", "in": "path", "required": True,
          "schema": {"type": "string", "pattern": RUN_ID_PATTERN}}
NAME = {"type": "string", "minLength": 1, "maxLength": 63, "pattern": DNS1123_LABEL}
TASK_ENTRY = {"type": "string", "minLength": 1, "maxLength": 70, "pattern": INSTANCE_NAME}
EVENT_ID = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
NOT_FOUND = _problem("No such run (or task)")
UNAVAILABLE = _problem("A backing service is unavailable; retry")
# A submitted run's id and name lead to the routes that read or change it (not to the
# live feed: it stays open until the run ends).
_RUN = {"dagId": "$response.body#/dagId"}
LINKS = {
    "GetRun": {"operationId": "getRun", "parameters": _RUN},
    "CancelRun": {"operationId": "cancelRun", "parameters": _RUN},
    "RetryRun": {"operationId": "retryRun", "parameters": _RUN},
    "ResubmitRun": {"operationId": "resubmitRun", "parameters": _RUN},
    "GetDagMetrics": {"operationId": "getDagMetrics",
                      "parameters": {"dagName": "$response.body#/dagName"}},
}


@cache
def openapi_document() -> dict[str, Any]:
    dag_schema = Dag.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    defs = dag_schema.pop("$defs", {})
    schemas: dict[str, Any] = {
        **defs,
        **listing.SCHEMAS,
        **templates_openapi.SCHEMAS,
        **firing_openapi.SCHEMAS,
        "Dag": dag_schema,
        "Problem": {
            "type": "object",
            "required": ["title", "status"],
            "properties": {
                "type": {"type": "string"}, "title": {"type": "string"},
                "status": {"type": "integer"}, "detail": {"type": "string"},
                "instance": {"type": "string"},
                "errors": {"type": "array", "items": {
                    "type": "object", "properties": {
                        "field": {"type": "string"}, "reason": {"type": "string"}}}},
            },
        },
        "Accepted": {
            "type": "object", "required": ["dagId", "status"],
            "properties": {"dagId": {"type": "string"},
                           "status": {"type": "string", "enum": ["CANCELLING", "RETRYING"]}},
        },
        "Submitted": {
            "type": "object", "required": ["dagId", "dagName", "status"],
            "properties": {"dagId": {"type": "string"}, "dagName": {"type": "string"},
                           "status": {"type": "string", "enum": [s.value for s in RunState]},
                           "useCache": {"type": "boolean"}, "taskCount": {"type": "integer"}},
        },
        "TaskStatus": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "state": {"type": "string", "enum": [s.value for s in TaskState]},
                "attempts": {"type": "integer"}, "dependsOn": {"type": "array", "items": {"type": "string"}},
                "node": {"type": ["string", "null"]}, "exitCode": {"type": ["integer", "null"]},
                "reason": {"type": ["string", "null"]}, "message": {"type": ["string", "null"]},
                "memoized": {"type": "boolean"}, "memoReason": {"type": ["string", "null"]},
                "lostAttempts": {"type": "integer", "description":
                                 "attempts lost with their executor and re-run (no retry spent)"},
                "timings": {"type": "object"}, "cache": {"type": "object"},
                "mapOf": {"type": "string", "description": "an instance `task[i]`: its forEach task"},
                "index": {"type": "integer", "description": "an instance: its item's index"},
                "instances": {"type": "integer", "description": "a forEach task: its instances,"
                              " listed right after it"},
                "onExit": {"type": "boolean", "description": "an exit handler"},
                "result": {"description": "the JSON the task wrote to /artifacts/.result"},
            },
        },
        "RunStatus": {
            "type": "object",
            "properties": {
                "dagId": {"type": "string"}, "dagName": {"type": "string"},
                "status": {"type": "string", "enum": [s.value for s in RunState]},
                "useCache": {"type": "boolean"}, "generation": {"type": "integer"},
                "submittedAt": {"type": ["number", "null"]}, "startedAt": {"type": ["number", "null"]},
                "endedAt": {"type": ["number", "null"]}, "durationMs": {"type": ["integer", "null"]},
                "tasks": {"type": "array", "items": {"$ref": "#/components/schemas/TaskStatus"}},
                **templates_openapi.RUN_STATUS_FIELDS,
            },
        },
        "Logs": {
            "type": "object",
            "properties": {"dagId": {"type": "string"}, "task": {"type": "string"},
                           "offset": {"type": "integer"}, "next": {"type": "integer"},
                           "lines": {"type": "array", "items": {"type": "string"}},
                           "truncated": {"type": "boolean", "description":
                                         "some attempt's lines were cut at HELIOS_LOG_MAX_BYTES"},
                           "cuts": {"type": "array", "items": {"type": "object", "properties": {
                               "attempt": {"type": "integer"}, "keptBytes": {"type": "integer"},
                               "fullLog": {"type": "string"}}}}},
        },
    }
    return document_security({
        "openapi": "3.1.0",
        "info": {"title": "Helios API", "version": __version__,
                 "description": "Submit DAGs of containerised tasks and follow their runs."},
        "servers": [{"url": "/api/v1"}],
        "paths": {
            "/dag-names": {"get": listing.DAG_NAMES},
            **templates_openapi.PATHS,
            **firing_openapi.PATHS,
            "/dags": {"get": listing.LIST_RUNS, "post": {
                "summary": "Submit a DAG", "operationId": "submitDag",
                "parameters": [{"name": "useCache", "in": "query", "required": False,
                                "schema": {"type": "boolean"},
                                "description": "Overrides the document's useCache"},
                               templates_openapi.PARAM_QUERY],
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Dag"}},
                    "application/yaml": {"schema": {"$ref": "#/components/schemas/Dag"}}}},
                "responses": {"201": {**_json("Stored and queued", "Submitted"), "links": LINKS},
                              "400": _problem(
                                  "Invalid document (every problem is listed in errors). Beyond "
                                  "this schema: task names are unique, dependencies and inputs "
                                  "name earlier-declared or existing tasks without a cycle, an "
                                  "input names one of its producer's outputs, input names are "
                                  "unique per task, at most 1 MiB, nesting at most 32 levels. "
                                  "Parameters: names unique, defaults and enums of the declared "
                                  "type, every parameter without a default given a value "
                                  "(`param`), every `{{` in command, args or env a known "
                                  "reference (errors name `params.NAME` or the field). "
                                  "Dynamic fields: `forEach` names an upstream task's output or "
                                  "a declared list parameter, `maxParallel` needs `forEach`, "
                                  "`when` is CEL naming only declared params and upstream "
                                  "tasks (at most one macro), `onExit` names are unique among "
                                  "all tasks, no task depends on an exit handler, and exit "
                                  "handlers have no `forEach`."),
                              "408": _problem("The body stalled (5 s without data, 20 s in all)"),
                              "415": _problem("Unsupported content type or encoding"),
                              "503": UNAVAILABLE},
            }},
            "/dags/{dagId}": {"get": {
                "summary": "Run status", "operationId": "getRun", "parameters": [DAG_ID],
                "responses": {"200": _json("The run", "RunStatus"), "404": NOT_FOUND,
                              "503": UNAVAILABLE},
            }},
            "/dags/{dagId}/events": {"get": {
                "summary": "Live feed (Server-Sent Events); honours Last-Event-ID",
                "operationId": "followRun",
                "parameters": [
                    DAG_ID,
                    {"name": "Last-Event-ID", "in": "header", "required": False, "schema": EVENT_ID,
                     "description": "Resume after this event id (ASCII digits)"},
                    {"name": "lastEventId", "in": "query", "required": False, "schema": EVENT_ID,
                     "description": "The same, for clients that cannot set headers"}],
                "responses": {"200": {"description": "event: task|run; id: stream sequence",
                                      "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                              "204": {"description": "The client has seen the end of the run"},
                              "400": _problem("Bad Last-Event-ID"), "404": NOT_FOUND,
                              "503": UNAVAILABLE},
            }},
            "/dags/{dagId}/tasks/{task}/logs": {"get": {
                "summary": "A task's log lines", "operationId": "getTaskLogs",
                "parameters": [DAG_ID,
                               {"name": "task", "in": "path", "required": True,
                                "schema": TASK_ENTRY,
                                "description": "A task, or a forEach instance `task[i]`"},
                               {"name": "offset", "in": "query",
                                "schema": {"type": "integer", "minimum": 0, "maximum": 10**9}},
                               {"name": "limit", "in": "query",
                                "schema": {"type": "integer", "minimum": 1, "maximum": 100000}}],
                "responses": {"200": {"description": "Lines from offset", "content": {
                                  "application/json": {"schema": {"$ref": "#/components/schemas/Logs"}},
                                  "text/plain": {"schema": {"type": "string"}}}},
                              "400": _problem("Bad offset or limit"), "404": NOT_FOUND,
                              "503": UNAVAILABLE},
            }},
            "/dags/{dagId}/cancel": {"post": {
                "summary": "Cancel a run", "operationId": "cancelRun", "parameters": [DAG_ID],
                "responses": {"202": _json("Cancelling", "Accepted"), "404": NOT_FOUND,
                              "409": _problem("The run already ended"), "503": UNAVAILABLE},
            }},
            "/dags/{dagId}/retry": {"post": {
                "summary": "Re-run failed, upstream-failed and cancelled tasks",
                "operationId": "retryRun", "parameters": [DAG_ID],
                "responses": {"202": _json("Retrying", "Accepted"), "404": NOT_FOUND,
                              "409": _problem("The run is running or succeeded"),
                              "503": UNAVAILABLE},
            }},
            "/dags/{dagName}/metrics": {"get": {
                "summary": "The last N runs of a DAG name and a summary",
                "operationId": "getDagMetrics",
                "parameters": [{"name": "dagName", "in": "path", "required": True, "schema": NAME},
                               {"name": "limit", "in": "query",
                                "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10}}],
                "responses": {"200": {"description": "Runs newest first, and a summary",
                                      "content": {"application/json": {"schema": {"type": "object"}}}},
                              "400": _problem("Bad limit or name"),
                              "503": _problem("Metrics service unavailable")},
            }},
            "/system/status": {"get": {
                "summary": "Health of each service and backing store",
                "operationId": "getSystemStatus",
                "responses": {"200": {"description": "Status",
                                      "content": {"application/json": {"schema": {"type": "object"}}}}},
            }},
        },
        "components": {"schemas": schemas},
    })
