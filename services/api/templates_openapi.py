"""The OpenAPI part of stored DAGs, parameters and resubmit (merged by `openapi.py`)."""

from __future__ import annotations

from typing import Any

from helios.definitions import RUN_ID_PATTERN
from helios.params import PARAM_NAME
from services.api.openapi_parts import NAME as _NAME
from services.api.openapi_parts import TEMPLATE as _TEMPLATE
from services.api.openapi_parts import json_response as _json
from services.api.openapi_parts import problem as _problem

_DAG_ID = {"name": "dagId", "in": "path", "required": True,
           "schema": {"type": "string", "pattern": RUN_ID_PATTERN}}


_UNAVAILABLE = _problem("A backing service (or every document parser) is unavailable; retry")
_INVALID = _problem("Invalid document, unknown template reference, or a missing or ill-typed "
                    "parameter value: every problem is listed in errors, each naming its field "
                    "(`tasks[1].command[2]`, `params.NAME`)")
_DOCUMENT = {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/Dag"}},
    "application/yaml": {"schema": {"$ref": "#/components/schemas/Dag"}}}}
_RUN_BODY = {"required": False, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/RunRequest"}}}}
_RESUBMIT_BODY = {"required": False, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/ResubmitRequest"}}}}
_STARTED = {"201": _json("Stored and queued", "Submitted"), "400": _INVALID,
            "404": _problem("No such stored DAG (or version, or run)"),
            "408": _problem("The body stalled"), "413": _problem("Body too large"),
            "415": _problem("Not application/json"),
            "503": _UNAVAILABLE}

PARAM_QUERY: dict[str, Any] = {
    "name": "param", "in": "query", "required": False, "style": "form", "explode": True,
    "schema": {"type": "array", "maxItems": 100,
               "items": {"type": "string", "pattern": PARAM_NAME[:-1] + "="}},
    "description": "A parameter value as NAME=VALUE (repeatable); the value is read as the "
                   "declared type (5, 0.5, true, a JSON list or comma-separated items)"}

RUN_STATUS_FIELDS: dict[str, Any] = {
    "params": {"type": "object", "description": "Every declared parameter's value"},
    "logicalTime": {"type": ["string", "null"], "description":
                    "{{ run.logicalTime }}: the scheduled time, else the submit time (RFC 3339)"},
    "template": {"type": "object", "properties": {"name": {"type": "string"},
                                                  "version": {"type": "integer"}},
                 "description": "The stored DAG and version the run came from"},
    "resubmitOf": {"type": "string", "description": "The run this one was resubmitted from"},
}

SCHEMAS: dict[str, Any] = {
    "ResubmitRequest": {
        "type": "object", "additionalProperties": False,
        "properties": {
            "params": {"type": "object", "maxProperties": 100,
                       "description": "Values that replace the run's own; a string is read as "
                                      "the declared type"},
            "useCache": {"type": "boolean"},
        },
    },
    "RunRequest": {
        "type": "object", "additionalProperties": False,
        "properties": {
            "params": {"type": "object", "maxProperties": 100,
                       "description": "Parameter values; a string is read as the declared type"},
            "useCache": {"type": "boolean"},
            "version": {"type": "integer", "minimum": 1, "maximum": 2**53,
                        "description": "A stored DAG's version (default: the latest); "
                                       "not allowed on resubmit"},
        },
    },
    "TemplateStored": {
        "type": "object", "required": ["name", "version", "created", "dagName"],
        "properties": {"name": {"type": "string"}, "version": {"type": "integer"},
                       "created": {"type": "boolean",
                                   "description": "false: the latest version held this document"},
                       "dagName": {"type": "string"}},
    },
    "TemplateSummary": {
        "type": "object", "required": ["name", "latest", "dagName"],
        "properties": {"name": {"type": "string"}, "latest": {"type": "integer"},
                       "dagName": {"type": "string"}, "createdAt": {"type": "number"},
                       "updatedAt": {"type": "number"}},
    },
    "Template": {
        "type": "object", "required": ["name", "version", "latest", "document", "params"],
        "properties": {
            "name": {"type": "string"}, "version": {"type": "integer"},
            "latest": {"type": "integer"}, "dagName": {"type": "string"},
            "createdAt": {"type": "number"}, "updatedAt": {"type": "number"},
            "digest": {"type": "string"},
            "params": {"type": "array", "items": {"type": "object"},
                       "description": "The declared parameters (a form can be built from them)"},
            "document": {"$ref": "#/components/schemas/Dag"},
            "versions": {"type": "array", "items": {"type": "object", "properties": {
                "version": {"type": "integer"}, "createdAt": {"type": "number"}}}},
        },
    },
    "TemplateList": {
        "type": "object", "required": ["templates"],
        "properties": {"templates": {"type": "array",
                                     "items": {"$ref": "#/components/schemas/TemplateSummary"}},
                       "next": {"type": "string", "description": "pass as `after` for more"}},
    },
}

PATHS: dict[str, Any] = {
    "/templates": {"get": {
        "summary": "Stored DAGs, in name order", "operationId": "listTemplates",
        "parameters": [{"name": "after", "in": "query", "required": False, "schema": _NAME},
                       {"name": "limit", "in": "query", "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000,
                                   "default": 100}}],
        "responses": {"200": _json("Stored DAGs", "TemplateList"),
                      "400": _problem("Bad after or limit"), "503": _UNAVAILABLE},
    }},
    "/templates/{name}": {
        "put": {
            "summary": "Store a DAG document as the next version of NAME",
            "operationId": "putTemplate", "parameters": [_TEMPLATE], "requestBody": _DOCUMENT,
            "responses": {"201": _json("Stored as a new version", "TemplateStored"),
                          "200": _json("The latest version holds this document already",
                                       "TemplateStored"),
                          "400": _INVALID, "404": _problem("Not a valid name"),
                          "408": _problem("The body stalled"),
                          "409": _problem("A new name, and 10,000 stored DAGs exist already"),
                          "415": _problem("Unsupported content type or encoding"),
                          "503": _UNAVAILABLE},
        },
        "get": {
            "summary": "A stored DAG: a version (default: the latest) and its parameters",
            "operationId": "getTemplate",
            "parameters": [_TEMPLATE, {"name": "version", "in": "query", "required": False,
                                       "schema": {"type": "integer", "minimum": 1,
                                                  "maximum": 10**16 - 1}}],
            "responses": {"200": _json("The stored DAG", "Template"),
                          "400": _problem("Bad version"),
                          "404": _problem("No such stored DAG or version"),
                          "503": _UNAVAILABLE},
        },
        "delete": {
            "summary": "Delete a stored DAG and its versions (its runs stay)",
            "operationId": "deleteTemplate", "parameters": [_TEMPLATE],
            "responses": {"204": {"description": "Deleted"},
                          "404": _problem("No such stored DAG"), "503": _UNAVAILABLE},
        },
    },
    "/templates/{name}/runs": {"post": {
        "summary": "Start a run of a stored DAG (the latest or a given version)",
        "operationId": "runTemplate", "parameters": [_TEMPLATE], "requestBody": _RUN_BODY,
        "responses": _STARTED,
    }},
    "/dags/{dagId}/resubmit": {"post": {
        "summary": "Start a new run with this run's definition and parameters (body params "
                   "override some); with memoization on, only what changed runs",
        "operationId": "resubmitRun", "parameters": [_DAG_ID], "requestBody": _RESUBMIT_BODY,
        "responses": _STARTED,
    }},
}
