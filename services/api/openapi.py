"""The OpenAPI 3.1 document of `/api/v1`, built from the same pydantic models that
validate requests, so the schema cannot drift from the behaviour."""

from __future__ import annotations

from functools import cache
from typing import Any

from helios import __version__
from helios.dag.model import Dag
from helios.definitions import RUN_ID_PATTERN
from helios.states import RunState, TaskState
from services.api.auth import document_security


def _problem(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def _json(description: str, ref: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


DAG_ID = {"name": "dagId", "in": "path", "required": True,
          "schema": {"type": "string", "pattern": RUN_ID_PATTERN}}
NOT_FOUND = _problem("No such run (or task)")


@cache
def openapi_document() -> dict[str, Any]:
    dag_schema = Dag.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    defs = dag_schema.pop("$defs", {})
    schemas: dict[str, Any] = {
        **defs,
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
                "timings": {"type": "object"}, "cache": {"type": "object"},
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
            },
        },
        "Logs": {
            "type": "object",
            "properties": {"dagId": {"type": "string"}, "task": {"type": "string"},
                           "offset": {"type": "integer"}, "next": {"type": "integer"},
                           "lines": {"type": "array", "items": {"type": "string"}}},
        },
    }
    return document_security({
        "openapi": "3.1.0",
        "info": {"title": "Helios API", "version": __version__,
                 "description": "Submit DAGs of containerised tasks and follow their runs."},
        "servers": [{"url": "/api/v1"}],
        "paths": {
            "/dags": {"post": {
                "summary": "Submit a DAG",
                "parameters": [{"name": "useCache", "in": "query", "required": False,
                                "schema": {"type": "boolean"},
                                "description": "Overrides the document's useCache"}],
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Dag"}},
                    "application/yaml": {"schema": {"$ref": "#/components/schemas/Dag"}}}},
                "responses": {"201": _json("Stored and queued", "Submitted"),
                              "400": _problem("Invalid document (every problem is listed in errors)"),
                              "415": _problem("Unsupported content type")},
            }},
            "/dags/{dagId}": {"get": {
                "summary": "Run status", "parameters": [DAG_ID],
                "responses": {"200": _json("The run", "RunStatus"), "404": NOT_FOUND},
            }},
            "/dags/{dagId}/events": {"get": {
                "summary": "Live feed (Server-Sent Events); honours Last-Event-ID",
                "parameters": [DAG_ID, {"name": "Last-Event-ID", "in": "header", "required": False,
                                        "schema": {"type": "integer", "minimum": 0}}],
                "responses": {"200": {"description": "event: task|run; id: stream sequence",
                                      "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                              "400": _problem("Bad Last-Event-ID"), "404": NOT_FOUND},
            }},
            "/dags/{dagId}/tasks/{task}/logs": {"get": {
                "summary": "A task's log lines",
                "parameters": [DAG_ID,
                               {"name": "task", "in": "path", "required": True, "schema": {"type": "string"}},
                               {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                               {"name": "limit", "in": "query",
                                "schema": {"type": "integer", "minimum": 1, "maximum": 100000}}],
                "responses": {"200": _json("Lines from offset", "Logs"),
                              "400": _problem("Bad offset or limit"), "404": NOT_FOUND},
            }},
            "/dags/{dagId}/cancel": {"post": {
                "summary": "Cancel a run", "parameters": [DAG_ID],
                "responses": {"202": {"description": "Cancelling"}, "404": NOT_FOUND,
                              "409": _problem("The run already ended")},
            }},
            "/dags/{dagId}/retry": {"post": {
                "summary": "Re-run failed, upstream-failed and cancelled tasks", "parameters": [DAG_ID],
                "responses": {"202": {"description": "Retrying"}, "404": NOT_FOUND,
                              "409": _problem("The run is running or succeeded")},
            }},
            "/dags/{dagName}/metrics": {"get": {
                "summary": "The last N runs of a DAG name and a summary",
                "parameters": [{"name": "dagName", "in": "path", "required": True, "schema": {"type": "string"}},
                               {"name": "limit", "in": "query",
                                "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10}}],
                "responses": {"200": {"description": "Runs newest first, and a summary",
                                      "content": {"application/json": {"schema": {"type": "object"}}}},
                              "400": _problem("Bad limit or name"),
                              "503": _problem("Metrics service unreachable")},
            }},
            "/system/status": {"get": {
                "summary": "Health of each service and backing store",
                "responses": {"200": {"description": "Status",
                                      "content": {"application/json": {"schema": {"type": "object"}}}}},
            }},
        },
        "components": {"schemas": schemas},
    })
